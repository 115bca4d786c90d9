"""What the sample API's handlers share (api.py and the route families it registers,
views.py): the backends they talk to, the 400 error and the id parser.

Kept apart from api.py so that the route families need not import the app that
registers them."""
from __future__ import annotations

import re
from typing import Any

from aiohttp import web
from bson import ObjectId

from shadow.demo.marketplace.dualwrite import DualWrite

HEX_ID = re.compile(r"^[0-9a-fA-F]{24}$")


class Backends:
    """What the handlers talk to; filled in by the app's cleanup contexts on startup."""

    def __init__(self) -> None:
        self.db: Any = None  # the PyMongo async database
        self.dual_write: DualWrite | None = None


BACKENDS = web.AppKey("backends", Backends)


class BadRequest(Exception):
    """A request the Node backend would answer with 400 (message = its error)."""


def object_id(text: str) -> ObjectId:
    """A path's 24-hex id (any case), or the Node backend's `400 invalid id`."""
    if not HEX_ID.match(text):
        raise BadRequest("invalid id")
    return ObjectId(text.lower())
