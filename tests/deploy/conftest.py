"""Fixtures for the deployment tests: the Helm chart loaded once per test process and a
renderer that returns the manifests as parsed Kubernetes objects."""
from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART_DIR = REPO / "helm" / "shadow"

Manifests = list[dict[str, Any]]
Render = Callable[..., Manifests]


def parse_manifests(rendered: dict[str, str]) -> Manifests:
    """Every Kubernetes object of a render (NOTES.txt and empty templates left out)."""
    objects: Manifests = []
    for template, text in sorted(rendered.items()):
        if template.endswith("NOTES.txt"):
            continue
        for document in yaml.safe_load_all(text):
            if document:
                document.setdefault("__template__", template)
                objects.append(document)
    return objects


def render_chart(chart: helm.Chart, values: dict[str, Any] | None, name: str = "orders", namespace: str = "shop") -> Manifests:
    return parse_manifests(chart.render(values, name=name, namespace=namespace))


@pytest.fixture(scope="session")
def chart() -> Iterator[helm.Chart]:
    with helm.Chart.load(CHART_DIR) as loaded:
        yield loaded


@pytest.fixture(scope="session")
def render(chart: helm.Chart) -> Render:
    def _render(values: dict[str, Any] | None, name: str = "orders", namespace: str = "shop") -> Manifests:
        return render_chart(chart, values, name, namespace)
    return _render


@pytest.fixture
def render_dir() -> Callable[..., Manifests]:
    """Render any chart directory (a parent chart, an edited copy)."""
    def _render(path: Path, values: dict[str, Any] | None = None, name: str = "orders", namespace: str = "shop") -> Manifests:
        with helm.Chart.load(path) as loaded:
            return render_chart(loaded, values, name, namespace)
    return _render


@pytest.fixture
def chart_copy(tmp_path: Path) -> Path:
    """A private copy of the chart a test may edit."""
    target = tmp_path / "shadow"
    shutil.copytree(CHART_DIR, target)
    return target
