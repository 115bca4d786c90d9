"""Path templates (`/api/payments/{id}`) and the matcher the proxy calls on every
request: a per-method segment trie built once per RuleSet, so `match` costs a few
dict lookups whatever the number of routes, and does no I/O."""
from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import unquote

from shadow.rules.spec import Route, RouteMatch

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
_PARAM = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)\}$")
_LITERAL = re.compile(r"^[A-Za-z0-9._~!$&'()*+,;=:@%-]+$")


def parse_template(template: str) -> tuple[tuple[str | None, ...], tuple[str, ...]]:
    """Segments (None = parameter) and parameter names of a path template.
    Raises ValueError saying what is wrong."""
    if not template.startswith("/"):
        raise ValueError(f"path template must start with '/': {template!r}")
    if "?" in template or "#" in template:
        raise ValueError(f"path template must not contain a query or fragment: {template!r}")
    parts = template.strip("/").split("/") if template != "/" else []
    segments: list[str | None] = []
    names: list[str] = []
    for part in parts:
        param = _PARAM.match(part)
        if param:
            if param.group(1) in names:
                raise ValueError(f"parameter {{{param.group(1)}}} appears twice in {template!r}")
            names.append(param.group(1))
            segments.append(None)
        elif not part:
            raise ValueError(f"empty segment ('//') in {template!r}")
        elif "{" in part or "}" in part:
            raise ValueError(f"bad parameter {part!r} in {template!r}: write a whole segment as {{name}}")
        elif not _LITERAL.match(part):
            raise ValueError(f"bad character in segment {part!r} of {template!r}")
        else:
            segments.append(part)
    return tuple(segments), tuple(names)


def shape(template: str) -> str:
    """The template with parameter names erased: two routes with one shape collide."""
    segments, _ = parse_template(template)
    return "/" + "/".join("{}" if segment is None else segment for segment in segments)


class _Node:
    __slots__ = ("param", "route", "static")

    def __init__(self) -> None:
        self.static: dict[str, _Node] = {}
        self.param: _Node | None = None
        self.route: Route | None = None


class Router:
    """Matches (method, path) to a route. Literal segments win over parameters."""

    def __init__(self, routes: Iterable[Route]) -> None:
        self._roots: dict[str, _Node] = {}
        for route in routes:
            node = self._roots.setdefault(route.method, _Node())
            for segment in parse_template(route.template)[0]:
                if segment is None:
                    node.param = node.param or _Node()
                    node = node.param
                else:
                    node = node.static.setdefault(segment, _Node())
            node.route = route

    def match(self, method: str, path: str) -> RouteMatch | None:
        root = self._roots.get(method)
        if root is None:
            return None
        cut = path.find("?")
        if cut >= 0:
            path = path[:cut]
        segments = path.strip("/").split("/") if path not in ("", "/") else []
        values: list[str] = []
        node: _Node | None = root
        for segment in segments:  # greedy: literal first, else the parameter
            assert node is not None  # the loop breaks as soon as it becomes None
            child = node.static.get(segment)
            if child is None and segment:
                child = node.param
                values.append(segment)
            node = child
            if node is None:
                break
        route = node.route if node is not None else None
        if route is None:  # a literal led to a dead end: the full backtracking walk
            values = []
            route = _walk(root, segments, 0, values)
            if route is None:
                return None
        if not values:
            return RouteMatch(route, {})
        # as many values as names (the trie matched them); strict=False: no check on the request path
        return RouteMatch(route, {name: unquote(value, errors="surrogateescape") if "%" in value else value
                                  for name, value in zip(route.param_names, values, strict=False)})


def _walk(node: _Node, segments: list[str], index: int, values: list[str]) -> Route | None:
    if index == len(segments):
        return node.route
    segment = segments[index]
    child = node.static.get(segment)
    if child is not None:
        found = _walk(child, segments, index + 1, values)
        if found is not None:
            return found
    if node.param is not None and segment:
        values.append(segment)
        found = _walk(node.param, segments, index + 1, values)
        if found is not None:
            return found
        values.pop()
    return None
