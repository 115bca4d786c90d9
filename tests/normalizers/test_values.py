"""The built-in normalizers: every spelling of one value lands on one canonical form."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from bson import Decimal128, ObjectId

import normalizers
from normalizers.idmap import IdMapCache
from normalizers.mixed import resolve
from normalizers.rows import multiset


@pytest.mark.parametrize("spelling", [
    Decimal("12.500000000000000000"), "12.5", 12.5, {"$numberDecimal": "12.50"}, Decimal128("12.5000"), " 12.5 ",
])
def test_decimal_is_scale_insensitive(spelling: object) -> None:
    assert normalizers.get("decimal").function(spelling) == Decimal("12.5")


def test_decimal_integral_values_become_ints_and_bad_input_is_an_error() -> None:
    decimal = normalizers.get("decimal").function
    assert decimal("100.000") == 100 and isinstance(decimal("100.000"), int)
    assert decimal(0.1) == Decimal("0.1")  # the double's shortest spelling, not its binary expansion
    with pytest.raises(ValueError, match="not a decimal"):
        decimal("twelve")
    with pytest.raises(ValueError):
        decimal({"$numberDecimal": "1", "extra": 2})


@pytest.mark.parametrize("spelling", [
    datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),  # PostgreSQL µs: truncated
    datetime(2026, 1, 2, 5, 4, 5, 678000, tzinfo=timezone(timedelta(hours=2))),
    datetime(2026, 1, 2, 3, 4, 5, 678000),  # naive = UTC
    "2026-01-02T03:04:05.678Z", "2026-01-02T03:04:05.678123456Z", "2026-01-02 03:04:05.678+00:00",
    {"$date": "2026-01-02T03:04:05.678Z"}, {"$date": {"$numberLong": "1767323045678"}}, 1767323045678,
])
def test_timestamp_to_ms_iso(spelling: object) -> None:
    assert normalizers.get("timestamp").function(spelling) == "2026-01-02T03:04:05.678Z"


def test_timestamp_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="not a timestamp"):
        normalizers.get("timestamp").function("yesterday")


def test_small_normalizers() -> None:
    assert normalizers.bind("lower_trim")("  Electronics ") == "electronics"
    assert normalizers.bind("enum", {"usd": "USD"})("usd") == "USD"
    assert normalizers.bind("enum", {"usd": "USD"})("EUR") == "EUR"
    assert normalizers.bind("default", 0)(None) == 0
    assert normalizers.bind("rename", {"old": "new"})({"old": 1, "kept": 2}) == {"new": 1, "kept": 2}
    assert [normalizers.bind("null_is_missing")(v) for v in (None, "", [], {}, "x")] == [None] * 4 + ["x"]
    assert normalizers.bind("json")('{"a": [1]}') == {"a": [1]}
    oid = ObjectId()
    assert normalizers.bind("objectid")({"$oid": str(oid).upper()}) == str(oid)
    assert normalizers.bind("string")(True) == "true"


USER_MODULE = "user_normalizers_example"


def test_user_normalizer_by_dotted_path_and_unknown_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).parent))  # as a user's PYTHONPATH would
    allowed = {USER_MODULE}  # the operator allows the module explicitly
    user = normalizers.get(f"{USER_MODULE}:strip_sku_prefix", allowed)
    assert user.bind()("SKU-123") == "123"
    with_argument = normalizers.get(f"{USER_MODULE}:truncate", allowed)
    assert with_argument.takes_argument and with_argument.bind(3)("abcdef") == "abc"
    with pytest.raises(normalizers.UnknownNormalizer, match="decimall"):
        normalizers.get("decimall")
    with pytest.raises(normalizers.UnknownNormalizer, match="cannot import"):
        normalizers.get("no.such.module:function", {"no.such.module"})


#: `as:` values an attacker (or a careless edit) might write -> why they are refused
HOSTILE_NORMALIZERS = [
    ("os:system", set(), "module 'os' is not allowed"),
    ("subprocess:run", set(), "module 'subprocess' is not allowed"),
    ("builtins:eval", set(), "module 'builtins' is not allowed"),
    (f"{USER_MODULE}:strip_sku_prefix", set(), "not allowed (allowed modules: none"),  # not allowed by default
    (f"{USER_MODULE}.x:f", {USER_MODULE}, "not allowed"),  # a submodule is not its parent
    ("normalizers.values:decimal", set(), "not allowed"),  # built-ins by registered name only
    (f"{USER_MODULE}:__class__", {USER_MODULE}, "not a public function name"),
    (f"{USER_MODULE}:_private", {USER_MODULE}, "not a public function name"),
    (f"{USER_MODULE}:a.b", {USER_MODULE}, "not a public function name"),
    (f"{USER_MODULE}:", {USER_MODULE}, "not a public function name"),
    (f"{USER_MODULE}:nope", {USER_MODULE}, "cannot import"),
]


@pytest.mark.parametrize(("name", "allowed", "message"), HOSTILE_NORMALIZERS)
def test_normalizers_load_only_from_allowed_modules(name: str, allowed: set[str], message: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    with pytest.raises(normalizers.UnknownNormalizer, match=message.replace("(", r"\(")):
        normalizers.get(name, allowed)


def test_an_allowed_module_cannot_lend_a_function_it_imported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "lending_norms.py").write_text("from os import system\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(normalizers.UnknownNormalizer, match="defined in 'posix'|defined in 'nt'"):
        normalizers.get("lending_norms:system", {"lending_norms"})


def test_a_disallowed_module_is_never_imported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "imported"
    (tmp_path / "side_effect_norms.py").write_text(f"open({str(marker)!r}, 'w').close()\ndef f(v):\n    return v\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(normalizers.UnknownNormalizer):
        normalizers.get("side_effect_norms:f")
    assert not marker.exists()


def test_mixed_ref_resolves_each_kind_and_flags_disagreement() -> None:
    legacy_of = {"0b7c5c1e-0000-4000-8000-000000000001": "65a1b2c3d4e5f60718293a4b"}
    assert resolve("entity", "0b7c5c1e-0000-4000-8000-000000000001", None, legacy_of) == "65a1b2c3d4e5f60718293a4b"
    assert resolve("template", None, "tpl-42", legacy_of) == "tpl-42"
    assert resolve(None, None, None, legacy_of) is None
    disagreeing = resolve("template", "0b7c5c1e-0000-4000-8000-000000000001", None, legacy_of)
    assert isinstance(disagreeing, str) and "disagrees" in disagreeing
    assert resolve("entity", "0b7c5c1e-0000-4000-8000-00000000ffff", None, legacy_of).startswith("<unmapped uuid")


def test_multiset_order_is_canonical() -> None:
    first = multiset([{"k": 2, "v": "b"}, {"k": 1, "v": "a"}], key="k")
    second = multiset([{"k": 1, "v": "a"}, {"k": 2, "v": "b"}], key="k")
    assert first == second and first[0]["k"] == 1
    assert multiset([Decimal("1.5"), 3, "x"]) == multiset(["x", 3, Decimal("1.5")])


def test_id_map_cache_is_bounded_lru() -> None:
    cache = IdMapCache(maxsize=2)
    cache.remember([("u1", "a"), ("u2", "b")])
    assert cache.unknown(["u1", "u2", "u3", None]) == ["u3"]
    cache.legacy_of(["u1"])  # u1 now most recent
    cache.remember([("u3", "c")])
    assert cache.legacy_of(["u1", "u2", "u3"]) == {"u1": "a", "u3": "c"}
    assert len(cache) == 2
    with pytest.raises(ValueError):
        IdMapCache(0)


# ----------------------------------------------------------- bounded inputs (issue 9)

from normalizers.values import MAX_DIGITS, OutOfRange, out_of_range

#: hostile spelling through `as: decimal` -> canonical value, or OutOfRange (never a hang)
HOSTILE_DECIMALS: list[tuple[object, object]] = [
    ("1e999999999", OutOfRange), ("-1e999999999", OutOfRange), ("1e-999999999", OutOfRange),
    ({"$numberDecimal": "1e999999999"}, OutOfRange), (Decimal("1e999999999"), OutOfRange),
    ("9" * 100_000, OutOfRange), ("1." + "1" * (MAX_DIGITS + 1), OutOfRange), (10 ** 700, OutOfRange),
    ("0e999999999", 0), ("1" + "0" * 150, 10 ** 150), ("1" + "1" * (MAX_DIGITS - 1), int("1" * MAX_DIGITS)),
    ("1e5000", Decimal("1e5000")), ("1e-5000", Decimal("1e-5000")), (Decimal128("9.999999999999999999999999999999999E+6144"), Decimal),
    ("NaN", "NaN"), ("-Infinity", "-Infinity"), ("sNaN", "sNaN"),
]


@pytest.mark.parametrize(("spelling", "expected"), HOSTILE_DECIMALS, ids=lambda v: repr(v)[:30])
def test_decimal_bounds_its_input(spelling: object, expected: object) -> None:
    got = normalizers.get("decimal").function(spelling)
    if isinstance(expected, type):
        assert isinstance(got, expected), got
    else:
        assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize("spelling", ["1e1e1", "--1", "1_000", "0x10", "", "１２"], ids=repr)
def test_decimal_garbage_is_unreadable_not_out_of_range(spelling: str) -> None:
    decimal = normalizers.get("decimal").function
    try:
        got = decimal(spelling)
    except ValueError:
        return
    assert not isinstance(got, OutOfRange)


HOSTILE_TIMESTAMPS: list[object] = [
    10 ** 30, -(10 ** 30), 1e300, float("inf"), float("-inf"), float("nan"), 253402300800000, -62135596800001,
    {"$date": {"$numberLong": "9" * 5000}}, {"$date": 10 ** 20}, "2026-01-02T03:04:05." + "1" * 100_000 + "Z",
    " " * 1000 + "2026-01-02",
]


@pytest.mark.parametrize("spelling", HOSTILE_TIMESTAMPS, ids=lambda v: repr(v)[:30])
def test_timestamp_bounds_its_input(spelling: object) -> None:
    assert isinstance(normalizers.get("timestamp").function(spelling), OutOfRange)


def test_timestamp_edges_of_the_range_still_read() -> None:
    timestamp = normalizers.get("timestamp").function
    assert timestamp(253402300799999) == "9999-12-31T23:59:59.999Z"
    assert timestamp(-62135596800000) == "0001-01-01T00:00:00.000Z"


def test_out_of_range_equals_only_the_same_marker_and_survives_pickling() -> None:
    import pickle

    marker = out_of_range("decimal", "1e999999999")
    assert marker != str(marker) and str(marker) != marker and marker != 0 and marker != Decimal(0)
    assert marker == out_of_range("decimal", "1e999999999") and marker != out_of_range("decimal", "1e999999998")
    assert {"a": marker} != {"a": str(marker)}
    copy = pickle.loads(pickle.dumps(marker))
    assert type(copy) is OutOfRange and copy == marker
    assert "1e999999999" in marker and len(out_of_range("decimal", "9" * 10_000)) < 120


def test_an_out_of_range_value_is_reported_as_a_mismatch(tmp_path: Path) -> None:
    from datetime import date

    from shadow.compare.diff import compare
    from shadow.rules import load_rules

    (tmp_path / "w.yaml").write_text("entity: w\ncollection: w\ntable: w\nfields:\n  _id: legacy_object_id\n"
                                     "  amount: {column: amount, as: decimal}\n  at: {column: at, as: timestamp}\n")
    entity = load_rules(tmp_path).entities["w"]
    control = {"_id": "65a1b2c3d4e5f60718293a4b", "amount": "1e999999999", "at": 10 ** 30}
    candidate = {"_id": "65a1b2c3d4e5f60718293a4b", "amount": Decimal(1), "at": "2026-01-02T03:04:05.678Z"}
    verdict = compare(entity, control, candidate, date(2026, 1, 1))
    assert verdict.outcome.value == "mismatch"
    assert {d.path: str(d.control) for d in verdict.diffs} == {
        "amount": "<out of range decimal: '1e999999999'>", "at": "<out of range timestamp: " + str(10 ** 30) + ">"}
