"""Rules are trusted configuration, but reading them must not be a way in: rule files
over the size cap are refused before parsing, YAML anchors/aliases are refused in rule
files (and capped in `rules test` files), normalizers import only from allowed
modules. Each refusal names file:line; a hot reload keeps the last good rules."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from shadow.cli import main
from shadow.policy import RulesPolicy, parse_modules, policy_from_args
from shadow.publish.metrics import Metrics
from shadow.rules import RulesError, load_rules
from shadow.rules.reload import RulesHolder, default_loader
from shadow.rules.yamltree import YamlProblem, load_documents

GOOD = """\
entity: widget
collection: widgets
table: widgets
fields:
  _id: legacy_object_id
  sku: {column: sku, as: lower_trim}
routes:
  - GET /api/widgets/{id}
"""


def laughs(levels: int) -> str:
    """The classic "billion laughs": 9 ** levels strings from a few hundred bytes."""
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, levels + 1):
        lines.append(f"l{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def merge_bomb(levels: int) -> str:
    """Merge keys doubling at every level (PyYAML's flatten_mapping copies them)."""
    lines = ["m0: &m0 {a: 1, b: 2}"]
    for level in range(1, levels + 1):
        lines.append(f"m{level}: &m{level} {{<<: [*m{level - 1}, *m{level - 1}], k{level}: 1}}")
    return "\n".join(lines) + "\n"


#: hostile YAML text -> (line, words of the refusal) when read as a rule file
HOSTILE_RULE_YAML = {
    "billion laughs (393 bytes)": (laughs(9), 1, "aliases (*name, <<: *name) are not allowed"),
    "merge-key doubling": (merge_bomb(40), 2, "aliases (*name, <<: *name) are not allowed"),
    "alias as a value": ("entity: &e widget\ncollection: *e\n", 2, "repeats the node anchored on line 1"),
    "alias to an undefined anchor": ("entity: widget\nfields: *nothing\n", 2, "YAML syntax"),
    "merge key": ("base: &b {x: 1}\nentity: {<<: *b}\n", 2, "aliases (*name, <<: *name) are not allowed"),
    "alias in a list": ("a: &x 1\nb: [2, *x]\n", 1, "repeats the node anchored on line 1"),
    "python name tag": ("entity: !!python/name:os.system ''\n", 1, "YAML syntax"),
    "unclosed flow": ("entity: [widget\n", 2, "YAML syntax"),
    "duplicate key": ("entity: a\nentity: b\n", 2, "duplicate key 'entity'"),
    "deep flow nesting": ("[" * 100_000, 1, "nest"),  # libyaml: "maximum nesting depth"; pure Python: "nested too deeply"
    "deep block nesting": ("- " * 5000 + "x\n", 1, "nest"),  # libyaml: "maximum nesting depth"; pure Python: "nested too deeply"
    "deep mapping nesting": ("a: " + "{b: " * 3000 + "1" + "}" * 3000 + "\n", 1, "nest"),  # libyaml: "maximum nesting depth"; pure Python: "nested too deeply"
}


@pytest.mark.parametrize("case", sorted(HOSTILE_RULE_YAML))
def test_hostile_yaml_in_a_rule_file_is_refused_with_its_line(case: str) -> None:
    text, line, words = HOSTILE_RULE_YAML[case]
    with pytest.raises(YamlProblem) as refused:
        load_documents(text)
    assert refused.value.line == line and words in refused.value.message, refused.value.message


def test_an_anchor_nothing_refers_to_is_harmless() -> None:
    assert load_documents("entity: widget\ncollection: &c widgets\n---\nentity: &x b\n") == [
        {"entity": "widget", "collection": "widgets"}, {"entity": "b"}]


def test_a_python_tag_on_a_collection_builds_nothing() -> None:
    [document] = load_documents("entity: !!python/object/apply:os.system ['true']\n")
    assert document == {"entity": ["true"]}  # a plain list: tags on collections construct nothing


def test_test_files_may_use_aliases_but_their_expansion_is_capped() -> None:
    [document] = load_documents("base: &b {x: 1, y: 2}\ncase: {<<: *b, y: 3}\nlist: [*b, *b]\n", aliases=True)
    assert document["case"] == {"x": 1, "y": 3} and document["list"] == [{"x": 1, "y": 2}] * 2
    [earlier_wins] = load_documents("a: &a {k: 1}\nb: &b {k: 2}\nc: {<<: [*a, *b]}\n", aliases=True)
    assert earlier_wins["c"] == {"k": 1}
    for bomb in (laughs(9), merge_bomb(40)):
        with pytest.raises(YamlProblem, match="too many nodes"):
            load_documents(bomb, aliases=True)


def test_a_rule_file_with_an_alias_bomb_fails_check_with_file_and_line(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "widgets.yaml").write_text(GOOD)
    (tmp_path / "bomb.yaml").write_text(laughs(9))
    assert main(["rules", "check", str(tmp_path)]) == 1
    assert f"{tmp_path / 'bomb.yaml'}:1: YAML aliases (*name, <<: *name) are not allowed" in capsys.readouterr().err


def test_a_rule_file_over_the_size_cap_is_refused_before_parsing(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "widgets.yaml").write_text(GOOD)
    big = tmp_path / "big.yaml"
    big.write_text("entity: [" + "x, " * 400_000 + "]\n")  # 1.2 MB: would parse, slowly
    with pytest.raises(RulesError) as refused:
        load_rules(tmp_path)
    [issue] = refused.value.issues
    assert issue.file == str(big) and issue.line == 1 and "larger than 1048576 bytes" in issue.message
    big.write_text("entity: [" * 10 + "\n")  # small again: parsed, and its own problem reported
    with pytest.raises(RulesError, match="YAML syntax"):
        load_rules(tmp_path, RulesPolicy(max_file_bytes=2000))
    big.unlink()
    with pytest.raises(RulesError, match="larger than 100 bytes"):
        load_rules(tmp_path, RulesPolicy(max_file_bytes=100))
    assert main(["rules", "check", str(tmp_path), "--rules-max-bytes", "100"]) == 1
    assert "larger than 100 bytes" in capsys.readouterr().err
    monkeypatch.setenv("SHADOW_RULES_MAX_BYTES", "100")
    assert main(["rules", "check", str(tmp_path)]) == 1
    assert main(["rules", "check", str(tmp_path), "--rules-max-bytes", "5000"]) == 0  # the flag wins
    monkeypatch.setenv("SHADOW_RULES_MAX_BYTES", "lots")
    assert main(["rules", "check", str(tmp_path)]) == 2
    assert "SHADOW_RULES_MAX_BYTES: expected a whole number" in capsys.readouterr().err


USER_NORMALIZER = Path(__file__).resolve().parents[1] / "normalizers"


@pytest.mark.parametrize("name", ["os:system", "subprocess:check_output", "user_normalizers_example:strip_sku_prefix"])
def test_check_rejects_a_normalizer_from_a_module_not_allowed(tmp_path: Path, name: str,
                                                             capsys: pytest.CaptureFixture[str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(USER_NORMALIZER))
    (tmp_path / "widgets.yaml").write_text(GOOD.replace("as: lower_trim", f'as: "{name}"'))
    assert main(["rules", "check", str(tmp_path)]) == 1
    module = name.partition(":")[0]
    assert f"{tmp_path / 'widgets.yaml'}:6: field 'sku': normalizer {name!r}: module {module!r} is not allowed" \
        in capsys.readouterr().err


def test_an_allowed_module_is_usable_by_flag_or_env(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(USER_NORMALIZER))
    monkeypatch.delenv("SHADOW_NORMALIZER_MODULES", raising=False)
    (tmp_path / "widgets.yaml").write_text(GOOD.replace("as: lower_trim", 'as: "user_normalizers_example:strip_sku_prefix"'))
    assert main(["rules", "check", str(tmp_path), "--normalizer-modules", "user_normalizers_example"]) == 0
    monkeypatch.setenv("SHADOW_NORMALIZER_MODULES", "other.mod, user_normalizers_example")
    assert main(["rules", "check", str(tmp_path)]) == 0
    rules = load_rules(tmp_path, RulesPolicy(normalizer_modules=frozenset({"user_normalizers_example"})))
    assert rules.entities["widget"].fields["sku"].transforms[0].apply("SKU-9") == "9"
    monkeypatch.setenv("SHADOW_NORMALIZER_MODULES", "os;rm -rf")
    assert main(["rules", "check", str(tmp_path)]) == 2
    assert "SHADOW_NORMALIZER_MODULES: expected comma-separated Python module names" in capsys.readouterr().err


@pytest.mark.parametrize(("text", "modules"), [
    ("", set()), (" , ", set()), ("a", {"a"}), ("a.b, c_d ,a.b", {"a.b", "c_d"}),
])
def test_module_lists_parse(text: str, modules: set[str]) -> None:
    assert parse_modules(text) == modules


@pytest.mark.parametrize("text", ["os:system", "a b", "a..b", ".a", "a.", "1a", "a/b", "a;b", "é\x00"])
def test_bad_module_lists_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="module names"):
        parse_modules(text)


def test_policy_defaults_allow_built_ins_only() -> None:
    import argparse

    policy = policy_from_args(argparse.Namespace(), {})
    assert policy == RulesPolicy(1048576, frozenset())


def test_a_refused_file_on_reload_keeps_the_last_good_rules(tmp_path: Path) -> None:
    rules_file = tmp_path / "widgets.yaml"
    rules_file.write_text(GOOD)
    metrics = Metrics()
    holder = RulesHolder(tmp_path, lambda directory: default_loader(directory, RulesPolicy(max_file_bytes=4096)),
                         on_result=metrics.rules_loaded)
    assert holder.load().ok
    good = holder.current.version
    for bad in (laughs(9), GOOD + "#" * 5000, GOOD.replace("as: lower_trim", 'as: "os:system"')):
        rules_file.write_text(bad)
        result = holder.load()
        assert not result.ok and result.version == good and holder.current.version == good
        assert result.problems and result.problems[0].startswith(f"{rules_file}:")
    assert metrics.registry.get_sample_value("shadow_rules_reloads_total", {"result": "error"}) == 3


def test_rule_test_files_take_the_same_policy(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(USER_NORMALIZER))
    (tmp_path / "widgets.yaml").write_text(GOOD.replace("as: lower_trim", 'as: "user_normalizers_example:strip_sku_prefix"'))
    (tmp_path / "tests").mkdir()
    case = tmp_path / "tests" / "cases.yaml"
    case.write_text(textwrap.dedent("""\
        rules: ..
        tests:
          - name: prefix stripped
            entity: widget
            control: &w {_id: 65a1b2c3d4e5f60718293a4b, sku: SKU-1}
            candidate: {<<: *w, sku: "1"}
            expect: {outcome: match}
        """))
    assert main(["rules", "test", str(case)]) == 1
    assert "module 'user_normalizers_example' is not allowed" in capsys.readouterr().out
    assert main(["rules", "test", str(case), "--normalizer-modules", "user_normalizers_example"]) == 0
    case.write_text(case.read_text() + laughs(9))
    assert main(["rules", "test", str(case), "--normalizer-modules", "user_normalizers_example"]) == 1
    assert "too many nodes" in capsys.readouterr().out
