"""The MongoDB side of a draft: the shape of a bounded sample of each collection.

`sample_collection(database, name, size)` reads at most `size` documents (`$sample`,
or `find().limit()` where the server lacks it — never a scan of the collection) and
returns a frozen `CollectionShape`: per document path the types seen, how often the
path was present, absent or null, the kinds of array items and the letter case of
strings. Values are not kept — with two exceptions that never leave the process:
the sampled `_id`s (the keys `--check` compares) and up to `PROBE_IDS` ObjectIds per
path (looked up in `id_map` to learn which collection a reference points at).

`Shaper` is pure and also shapes recorded API answers (answers.py).
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from types import MappingProxyType
from typing import Any

from bson import Decimal128, ObjectId

MAX_DEPTH = 12  # deeper subdocuments are reported, not walked
MAX_ITEMS = 100  # array items looked at per array (a huge array costs no more)
MAX_PATHS = 2000  # distinct paths per collection (beyond: reported)
PROBE_IDS = 5
ITEM = "[*]"


@dataclass(frozen=True, slots=True)
class PathShape:
    """What the sample showed at one path (`a.b`, `a[*]`, `a[*].b`)."""

    path: str
    types: Mapping[str, int]  # objectid, string, int, double, decimal, bool, date, null, object, array, other
    present: int  # containers holding the key (null included)
    containers: int  # containers the key could have been in (documents, or parent objects / items)
    cases: frozenset[str] = frozenset()  # strings: lower | upper | mixed
    max_items: int = 0  # arrays: the longest seen

    @property
    def absent(self) -> int:
        return self.containers - self.present

    def kinds(self) -> set[str]:
        """The types seen, without null."""
        return {kind for kind in self.types if kind != "null"}

    def summary(self) -> str:
        seen = ", ".join(f"{kind} {count}" for kind, count in sorted(self.types.items()))
        absent = f", absent in {self.absent}" if self.absent else ""
        return f"{seen} of {self.containers}{absent}"


@dataclass(frozen=True, slots=True)
class CollectionShape:
    name: str
    documents: int
    paths: Mapping[str, PathShape]
    keys: tuple[str, ...] = field(default=(), repr=False)  # sampled _ids (for --check; never written)
    probe_ids: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}), repr=False)
    problems: tuple[str, ...] = ()  # what the sample could not describe (odd keys, too deep, too many paths)

    def children(self, parent: str) -> list[PathShape]:
        """The paths one step under `parent` ("" = the document), in first-seen order."""
        prefix = f"{parent}." if parent else ""
        return [shape for path, shape in self.paths.items()
                if path.startswith(prefix) and "." not in path[len(prefix):] and not path[len(prefix):].endswith(ITEM)
                and path != parent]

    def under(self, path: str) -> list[PathShape]:
        """Every path strictly under `path`."""
        return [shape for key, shape in self.paths.items() if key.startswith(path + ".") or key.startswith(path + ITEM)]


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "double"
    if isinstance(value, str):
        return "string"
    if isinstance(value, ObjectId):
        return "objectid"
    if isinstance(value, Decimal128):
        return "decimal"
    if isinstance(value, datetime | date):
        return "date"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list | tuple):
        return "array"
    return "other"


def _case(text: str) -> str | None:
    if text.lower() == text.upper():
        return None
    return "lower" if text == text.lower() else "upper" if text == text.upper() else "mixed"


def odd_key(key: Any) -> bool:
    """A key no rule path can name (dots, brackets, `$`, empty, not a string)."""
    return not isinstance(key, str) or not key or key.startswith("$") or any(ch in key for ch in ".[]")


class Shaper:
    """Accumulates the shape of documents, one `observe` at a time (pure, bounded)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.documents = 0
        self.types: dict[str, Counter[str]] = {}
        self.present: Counter[str] = Counter()
        self.containers: Counter[str] = Counter()
        self.cases: dict[str, set[str]] = {}
        self.max_items: Counter[str] = Counter()
        self.keys: list[str] = []
        self.probe_ids: dict[str, list[str]] = {}
        self.problems: dict[str, str] = {}

    def observe(self, document: Mapping[str, Any]) -> None:
        self.documents += 1
        if "_id" in document and len(self.keys) < 100_000:
            self.keys.append(str(document["_id"]))
        self._object("", document, 0)

    def _problem(self, path: str, text: str) -> None:
        if len(self.problems) < 50:
            self.problems.setdefault(path, text)

    def _object(self, path: str, value: Mapping[str, Any], depth: int) -> None:
        self.containers[path] += 1
        if depth >= MAX_DEPTH:
            self._problem(path, f"{path or '(document)'}: nested deeper than {MAX_DEPTH} levels, not walked")
            return
        for key, item in value.items():
            if odd_key(key):
                self._problem(f"{path}.{key!s:.40}", f"{path or '(document)'}: key {str(key)[:40]!r} cannot be named "
                                                     "in a rule path (dots, brackets or $)")
                continue
            child = f"{path}.{key}" if path else key
            self.present[child] += 1
            self._value(child, item, depth + 1)

    def _value(self, path: str, value: Any, depth: int) -> None:
        if path not in self.types:
            if len(self.types) >= MAX_PATHS:
                self._problem("", f"more than {MAX_PATHS} distinct paths: the rest not described")
                return
            self.types[path] = Counter()
        kind = type_name(value)
        self.types[path][kind] += 1
        if kind == "string":
            case = _case(value)
            if case:
                self.cases.setdefault(path, set()).add(case)
        elif kind == "objectid":
            ids = self.probe_ids.setdefault(path, [])
            if len(ids) < PROBE_IDS and str(value) not in ids:
                ids.append(str(value))
        elif kind == "object":
            self._object(path, value, depth)
        elif kind == "array":
            self.max_items[path] = max(self.max_items[path], len(value))
            if len(value) > MAX_ITEMS:
                self._problem(path, f"{path}: arrays up to {len(value)} items; the first {MAX_ITEMS} described")
            item_path = path + ITEM
            for item in list(value[:MAX_ITEMS]):
                self.present[item_path] += 1
                self._value(item_path, item, depth + 1)

    def shape(self) -> CollectionShape:
        paths = {}
        for path, types in self.types.items():
            parent = _parent(path)
            paths[path] = PathShape(path, MappingProxyType(dict(types)), self.present[path],
                                    self.containers[parent] if not path.endswith(ITEM) else self.present[path],
                                    frozenset(self.cases.get(path, ())), self.max_items[path])
        return CollectionShape(self.name, self.documents, MappingProxyType(paths), tuple(self.keys),
                               MappingProxyType({path: tuple(ids) for path, ids in self.probe_ids.items()}),
                               tuple(self.problems.values()))


def _parent(path: str) -> str:
    """`a[*].b` -> `a[*]`, `a.b` -> `a`, `a` -> ``."""
    cut = path.rfind(".")
    return path[:cut] if cut >= 0 else ""


def shape_of(name: str, documents: Iterable[Mapping[str, Any]]) -> CollectionShape:
    shaper = Shaper(name)
    for document in documents:
        shaper.observe(document)
    return shaper.shape()


async def sample_collection(database: Any, name: str, size: int) -> CollectionShape:
    """The shape of at most `size` documents of one collection (PyMongo async database).

    `$sample` reads random documents without a scan only when `size` is under 5 % of the
    collection (MongoDB otherwise scans and sorts it at random); below that, or where the
    server has no `$sample`, the first `size` documents in natural order are read."""
    from pymongo.errors import PyMongoError

    collection = database[name]
    try:
        estimated = int(await collection.estimated_document_count())
    except PyMongoError:
        estimated = 0
    if size * 20 < estimated:
        shaper = Shaper(name)
        try:
            cursor = await collection.aggregate([{"$sample": {"size": size}}])
            async for document in cursor:
                shaper.observe(document)
            return shaper.shape()
        except PyMongoError:
            pass  # no $sample on this server
    shaper = Shaper(name)
    async for document in collection.find({}).limit(size):
        shaper.observe(document)
    return shaper.shape()


async def list_collections(database: Any) -> list[str]:
    names = await database.list_collection_names()
    return sorted(name for name in names if not name.startswith("system."))
