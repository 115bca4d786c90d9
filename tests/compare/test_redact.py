"""Redaction of the rules' `redact` paths before values leave the process."""
from __future__ import annotations

from pathlib import Path

from shadow.publish.redaction import REDACTED, redact_diffs, redact_document
from shadow.model import FieldDiff
from shadow.rules import load_rules

RULES = Path(__file__).resolve().parents[2] / "rules" / "marketplace"


def test_redact_paths_are_replaced_in_documents_and_diffs() -> None:
    rules = load_rules(RULES)
    payments, disputes = rules.entities["payments"], rules.entities["disputes"]
    document = {"blockchain": {"txHash": "0xsecret", "network": "eth"}, "metadata": {"client": {"ip": "1.2.3.4"}}}
    assert redact_document(payments, document) == {"blockchain": {"txHash": REDACTED, "network": "eth"},
                                                   "metadata": {"client": REDACTED}}
    assert redact_document(disputes, {"evidence": [{"url": "https://x", "type": "link"}]}) == {
        "evidence": [{"url": REDACTED, "type": "link"}]}
    diffs = [FieldDiff("blockchain.txHash", "blockchain.txHash", "0xa", "0xb"),
             FieldDiff("blockchain", "blockchain", {"txHash": "0xa"}, None, "missing_in_candidate"),
             FieldDiff("status", "status", "completed", "failed")]
    assert [(d.control, d.candidate) for d in redact_diffs(payments, diffs)] == [
        (REDACTED, REDACTED), (REDACTED, None), ("completed", "failed")]
