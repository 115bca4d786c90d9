"""The evidence pages' HTML: Jinja2 templates (shadow/publish/templates/evidence/),
autoescaped, shared by the per-pod admin page and `shadow console`. No script runs on
these pages; the trend is an inline SVG built here from numbers only."""
from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from typing import Any

import jinja2
from markupsafe import Markup

#: sent with every evidence page: nothing loads from elsewhere, no script, no framing
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def utc(stamp: float | None, with_date: bool = True) -> str:
    if stamp is None:
        return "—"
    return time.strftime("%Y-%m-%d %H:%M:%S" if with_date else "%H:%M:%S", time.gmtime(stamp))


def pct(value: float | None) -> str:
    if value is None:
        return "—"
    if 0 < value < 0.01:
        return "<0.01%"
    return f"{value:.2f}%"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min"


def sparkline(values: Sequence[int], width: int = 96, height: int = 18) -> Markup:
    """A tiny inline SVG of `values` (numbers only go into it, so it is safe markup)."""
    if not values:
        return Markup("")
    top = max(values) or 1
    step = width / max(len(values) - 1, 1)
    points = " ".join(f"{index * step:.1f},{height - 1 - (value / top) * (height - 2):.1f}"
                      for index, value in enumerate(values))
    title = " ".join(str(int(value)) for value in values)
    return Markup(
        f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">'
        f"<title>{title}</title>"
        f'<polyline fill="none" stroke="currentColor" stroke-width="1.5" points="{points}"/></svg>')


@functools.cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("shadow.publish", "templates/evidence"),
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(utc=utc, pct=pct, duration=duration, sparkline=sparkline, json=_json)
    return env


def render(template: str, **context: Any) -> str:
    return environment().get_template(template).render(**context)


def _json(value: Any) -> str:
    import orjson

    return orjson.dumps(value, default=str, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode()
