"""The admin tests run over the same widget world as the pipeline tests (its fixtures
are re-exported from tests/replay/conftest.py; conftest modules are not importable
by name under --import-mode=importlib)."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_NAME = "shadow_tests_widget_world"
if _NAME not in sys.modules:
    _spec = importlib.util.spec_from_file_location(_NAME, Path(__file__).parents[1] / "replay" / "conftest.py")
    assert _spec is not None and _spec.loader is not None
    sys.modules[_NAME] = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(sys.modules[_NAME])
_world = sys.modules[_NAME]

world = _world.world
start = _world.start
engine = _world.engine  # the admin tests run on both request-path engines too
probe = _world.probe
