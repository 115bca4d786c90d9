"""Render a `GateReport` for people (a table per entity and route, then every NO-GO
reason) or for machines (JSON). Pure: report in, text out."""
from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from shadow.gate.verdict import ALL_ROUTES, GateReport, RouteRow

COLUMNS = ("ENTITY", "ROUTE", "COMPARISONS", "PERSISTENT", "TRANSIENT", "UNSTABLE", "ERRORS", "TOP FIELDS", "VERDICT")
NUMERIC = {"COMPARISONS", "PERSISTENT", "TRANSIENT", "UNSTABLE", "ERRORS"}


def reason_lines(report: GateReport) -> list[str]:
    """Every NO-GO reason, prefixed with its entity and route."""
    lines = []
    for entity in report.entities:
        lines += [f"{entity.entity}: {reason}" for reason in entity.total.reasons]
        for row in entity.routes:
            lines += [f"{row.entity} {row.route}: {reason}" for reason in row.reasons]
    return lines


def render_table(report: GateReport) -> str:
    """The human report: header, table, reasons, final verdict line."""
    header = f"shadow gate · {report.scope} · window {report.window} · evaluated {_iso(report.evaluated_at)}"
    rows: list[tuple[str, ...]] = [COLUMNS]
    for entity in report.entities:
        rows.append(_cells(entity.total, entity.go))
        rows += [_cells(row, row.go) for row in entity.routes]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    table = [
        "  ".join(cell.rjust(w) if COLUMNS[i] in NUMERIC else cell.ljust(w)
                  for i, (cell, w) in enumerate(zip(r, widths, strict=True))).rstrip()
        for r in rows
    ]
    out = [header, "", *table, ""]
    verified = [entity for entity in report.entities if any(cell != "-" for cell in entity.layers.values())]
    if verified:  # shadow verify's layers (1, 2, 3b) beside the shadow reads (3)
        out.append(f"{'ENTITY':24} {'COUNTS':10} {'SUMS':10} {'DOCS':10} {'COVERAGE':10} DUAL-WRITE GAPS")
        out += [f"{entity.entity:24} {entity.layers.get('counts', '-'):10} {entity.layers.get('sums', '-'):10} "
                f"{entity.layers.get('docs', '-'):10} "
                f"{'full scan' if entity.layers.get('docs') == 'clean' else '-':10} "
                f"{entity.layers.get('dualwrite_gaps', '-')}".rstrip() for entity in verified]
        out.append("")
    out += [f"note: {note}" for note in report.notes]
    noisy = noisy_lines(report)
    if noisy:
        out.append("noisy fields (the API's answer changed between two reads back to back; never ignored "
                   "automatically):")
        out += [f"  - {line}" for line in noisy]
        out.append("")
    reasons = reason_lines(report)
    if reasons:
        out.append("NO-GO reasons:")
        out += [f"  - {line}" for line in reasons]
        out.append("")
        out.append(f"VERDICT: NO-GO ({len(reasons)} reason{'s' if len(reasons) != 1 else ''})")
    elif report.go:
        out.append(f"VERDICT: GO ({len(report.entities)} entit{'ies' if len(report.entities) != 1 else 'y'} pass every "
                   "criterion)")
    else:
        out.append("VERDICT: NO-GO (no entity to evaluate)")
    return "\n".join(out) + "\n"


def noisy_lines(report: GateReport) -> list[str]:
    """The noisiest paths of each entity with the rule line that would ignore them."""
    return [f"{entity.entity} {path} x{count}: suggest ignore: ['{path}']"
            for entity in report.entities for path, count in entity.noisy]


def render_json(report: GateReport) -> str:
    return json.dumps(to_json(report), indent=2, sort_keys=False) + "\n"


def to_json(report: GateReport) -> dict[str, Any]:
    """The report as plain JSON values (also what the admin /gate answers)."""
    return {
        "verdict": "GO" if report.go else "NO-GO",
        "scope": report.scope,
        "window": report.window,
        "evaluated_at": _iso(report.evaluated_at),
        "notes": list(report.notes),
        "reasons": reason_lines(report),
        "entities": [
            {
                "entity": e.entity,
                "verdict": "GO" if e.go else "NO-GO",
                "verify_layers": dict(e.layers),
                "total": {**_row_json(e.total), "verdict": "GO" if e.go else "NO-GO"},
                "routes": [_row_json(row) for row in e.routes],
                "noisy_fields": [{"field": f, "count": n, "suggest": f"ignore: ['{f}']"} for f, n in e.noisy],
            }
            for e in report.entities
        ],
    }


def _row_json(row: RouteRow) -> dict[str, Any]:
    return {
        "route": None if row.route == ALL_ROUTES else row.route,
        "comparisons": row.comparisons,
        "persistent_mismatches": row.persistent,
        "transient": row.transient,
        "unstable": row.unstable,
        "unstable_share": round(row.unstable_share, 6),
        "errors": row.errors,
        "error_ratio": round(row.error_ratio, 6),
        "outcomes": dict(sorted(row.outcomes.items())),
        "top_fields": [{"field": f, "count": n} for f, n in row.top_fields],
        "verdict": "GO" if row.go else "NO-GO",
        "reasons": list(row.reasons),
    }


def _cells(row: RouteRow, go: bool) -> tuple[str, ...]:
    fields = ", ".join(f"{f} x{n}" for f, n in row.top_fields) or "-"
    unstable = f"{row.unstable} ({row.unstable_share:.0%})" if row.unstable else "0"
    return (row.entity, row.route, str(row.comparisons), str(row.persistent), str(row.transient), unstable,
            str(row.errors), fields, "GO" if go else "NO-GO")


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
