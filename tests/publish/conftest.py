"""The admin tests run over the same widget world as the pipeline tests (its fixtures
are re-exported from tests/replay/conftest.py; conftest modules are not importable
by name under --import-mode=importlib)."""
from __future__ import annotations

from tests.fixtures import load_conftest

_world = load_conftest("replay")

world = _world.world
start = _world.start
engine = _world.engine  # the admin tests run on both request-path engines too
probe = _world.probe
