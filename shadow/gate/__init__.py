"""The cutover gate: criteria YAML → samples (Prometheus, or the local registry) →
GO / NO-GO per entity and route, with the reason for every NO-GO.

criteria.py (load, validate) · prometheus.py (the only HTTP to Prometheus) ·
local.py (this process's counters, for the admin /gate) · verdict.py (pure decision) ·
report.py (table, JSON) · cli.py (`shadow gate`).
"""
from shadow.gate.criteria import CriteriaError, GateCriteria, load_criteria
from shadow.gate.verdict import GateReport, GateSamples, decide

__all__ = ["CriteriaError", "GateCriteria", "GateReport", "GateSamples", "decide", "load_criteria"]
