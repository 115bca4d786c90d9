"""`shadow gate`: GO / NO-GO for flipping reads, from Prometheus.

Exit 0 GO, 1 NO-GO (the reasons are printed), 2 cannot evaluate (criteria invalid,
Prometheus unreachable, metric absent, alert rules not loaded). Never GO on missing data.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TextIO

from shadow.gate.criteria import CriteriaError, load_criteria
from shadow.gate.prometheus import collect
from shadow.gate.report import render_json, render_table, to_json
from shadow.gate.verdict import GateUnavailable, decide

CANNOT_EVALUATE = 2


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prometheus", metavar="URL", default=os.environ.get("SHADOW_PROMETHEUS"),
                        help="Prometheus base URL, e.g. http://prometheus:9090 (env SHADOW_PROMETHEUS)")
    parser.add_argument("--criteria", metavar="FILE", default=os.environ.get("SHADOW_GATE_CRITERIA", "rules/gate.yaml"),
                        help="gate criteria YAML (env SHADOW_GATE_CRITERIA; default rules/gate.yaml)")
    parser.add_argument("--entity", metavar="NAME", help="evaluate only this entity of the criteria")
    parser.add_argument("--window", metavar="DURATION", help="override the criteria's window, e.g. 24h, 7d")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--timeout", metavar="SECONDS", type=float, default=10.0, help="per-query timeout (default 10)")
    parser.add_argument("--evidence", metavar="DSN", default=os.environ.get("SHADOW_EVIDENCE"),
                        help="evidence store DSN: record the verdict and its reasons (env SHADOW_EVIDENCE)")


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Evaluate, print, and return the exit code (streams injectable for tests)."""
    out, err = out or sys.stdout, err or sys.stderr

    def _cannot(message: str) -> int:
        print(f"shadow gate: CANNOT EVALUATE (exit 2): {message}", file=err)
        if args.json:
            out.write(json.dumps({"verdict": "CANNOT_EVALUATE", "error": message}, indent=2) + "\n")
        if getattr(args, "evidence", None):
            from shadow.publish.evidence_audit import record_gate_or_warn
            record_gate_or_warn(args.evidence, {"verdict": "CANNOT_EVALUATE", "reasons": [message]}, err)
        return CANNOT_EVALUATE

    if not args.prometheus:
        return _cannot("--prometheus URL is required (or SHADOW_PROMETHEUS)")
    try:
        criteria = load_criteria(args.criteria)
        if args.window:
            criteria = criteria.with_window(args.window)
        if args.entity:
            criteria = criteria.only(args.entity)
    except CriteriaError as error:
        return _cannot(f"invalid criteria:\n{error}")
    except ValueError as error:
        return _cannot(f"--window: {error}")
    except KeyError as error:
        return _cannot(f"--entity: {error.args[0]}")
    try:
        samples = collect(args.prometheus, criteria, timeout=args.timeout)
    except GateUnavailable as error:
        return _cannot(str(error))
    report = decide(samples, criteria)
    out.write(render_json(report) if args.json else render_table(report))
    if args.evidence:
        from shadow.publish.evidence_audit import record_gate_or_warn
        if not record_gate_or_warn(args.evidence, to_json(report), err):
            return CANNOT_EVALUATE  # an audit trail that silently misses a verdict is worse than none
    return report.exit_code
