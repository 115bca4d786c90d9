"""Name matching between documents and tables: `buyerId` ~ `buyer_id`,
`purchaserequests` ~ `purchase_requests`, `passkeys` ~ `user_passkeys`. Pure."""
from __future__ import annotations

import re

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_SPLIT = re.compile(r"[^A-Za-z0-9]+")
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: columns that keep an array's order (the API's order) in a child table
ORDER_COLUMNS = ("position", "pos", "idx", "index", "ordinal", "sort_order", "seq", "sequence", "rank")
#: a leaf named like this inside a subdocument is the subdocument's own column (`budget.value` -> budget)
VALUE_LEAVES = ("value", "amount")


def words(name: str) -> list[str]:
    """`preferredSellerIds` -> [preferred, seller, ids]; `pr_delivery_info` -> [pr, delivery, info]."""
    return [word.lower() for part in _SPLIT.split(name) for word in _CAMEL.split(part) if word]


def snake(*parts: str) -> str:
    return "_".join(word for part in parts for word in words(part))


def singular(word: str) -> str:
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("sses", "xes", "ches", "shes")):
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us", "is")) and len(word) > 3:
        return word[:-1]
    return word


def stem(name: str) -> list[str]:
    """Singular words, without a trailing `id`/`ids` (arrays of ids name their items)."""
    found = [singular(word) for word in words(name)]
    if len(found) > 1 and found[-1] in ("id", "ids", "ref", "refs"):
        found = found[:-1]
    return found


def squashed(name: str) -> str:
    """`purchase_requests` and `purchaserequests` and `PurchaseRequest` all -> `purchaserequest`."""
    return singular("".join(words(name)))


def ends_with(table: str, path_key: str) -> bool:
    """`purchase_request_preferred_sellers` ends with `preferredSellerIds`'s words."""
    tail = stem(path_key)
    return bool(tail) and [singular(word) for word in words(table)][-len(tail):] == tail
