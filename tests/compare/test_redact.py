"""One redaction for everything that leaves the process: secret names (defaults and the
rules' `redact_names:`) and the rules' `redact:` paths, used by the sink (log, page,
/mismatches) and by `shadow compare`."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from shadow.model import FieldDiff
from shadow.publish.redaction import DEFAULT, REDACTED, Redaction, names_hide, words
from shadow.rules import RulesError, load_rules

RULES = Path(__file__).resolve().parents[2] / "rules" / "marketplace"

#: collapsed path -> hidden by the default names?
NAMES_TABLE: list[tuple[str, bool]] = [
    # the misses
    ("apiKey", True), ("api_key", True), ("API_KEY", True), ("x-api-key", True), ("headers.X-Api-Key", True),
    ("authorization", True), ("Authorization", True), ("headers.authorization", True),
    ("cookie", True), ("setCookie", True), ("cookies[*].value", True),
    ("privateKey", True), ("private_key", True), ("keys.privateKeyPem", True),
    ("ssn", True), ("SSN", True), ("profile.ssn", True), ("ssnLast4", True), ("user_ssn", True),
    ("cvv", True), ("card.cvv", True), ("cvv2", True), ("cvc", True),
    ("card.number", True), ("cardNumber", True), ("card_number", True), ("payment.card.number", True),
    ("creditCardNumber", True), ("credentials.pass", True), ("credentials", True), ("credential.passwd", True),
    ("passwd", True), ("apiToken", True), ("passwordHash", True),
    # the existing names, any case and any spelling
    ("password", True), ("PASSWORD", True), ("passwordhash", True), ("password_hash", True), ("refreshTokens", True),
    ("refreshTokens[*].value", True), ("emailVerificationToken", True), ("apiSecret", True),
    ("client_secret", True), ("blockchain.txHash", True), ("passkeys[*].salt", True), ("accessKeyId", True),
    ("iban", True), ("bank.IBAN", True),
    # visible: similar-looking names that are not secrets
    ("name", False), ("businessName", False), ("lessons", False), ("classNames", False), ("email", False),
    ("passkeys[*].publicKey", False), ("card.last4", False), ("card.brand", False), ("number", False),
    ("keyId", False), ("api", False), ("status", False), ("amount.value", False), ("offers[*].status", False),
    ("cardholderName", False), ("passenger", False), ("compass", False), ("", False),
]


@pytest.mark.parametrize(("path", "hidden"), NAMES_TABLE)
def test_default_names_across_case_and_spelling(path: str, hidden: bool) -> None:
    assert names_hide(path) is hidden
    assert DEFAULT.hides(path) is hidden
    assert (DEFAULT.value({"v": 1}, path) == REDACTED) is hidden if path else True


@pytest.mark.parametrize(("text", "expected"), [
    ("cardNumber", ("card", "number")), ("card_number", ("card", "number")), ("CARD-NUMBER", ("card", "number")),
    ("APIKey", ("api", "key")), ("ssnLast4", ("ssn", "last", "4")), ("offers[*].status", ("offers", "status")),
    ("", ()), ("___", ()), ("é", ()), ("a" * 10_000, ("a" * 10_000,)),
])
def test_words(text: str, expected: tuple[str, ...]) -> None:
    assert words(text) == expected


def test_hostile_keys_in_a_document_do_not_break_redaction() -> None:
    document = {"": 1, ".": 2, "[*]": 3, "a" * 100_000: 4, "pass\x00word": "x", "\u202epassword": "y",
                "nested": {"1": {"apiKey": "k"}}, "list": [[{"secret": "s"}]]}
    redacted = DEFAULT.value(document)
    assert redacted["nested"] == {"1": {"apiKey": REDACTED}} and redacted["list"] == [[{"secret": REDACTED}]]
    assert redacted["\u202epassword"] == REDACTED and redacted[""] == 1 and redacted["a" * 100_000] == 4


def test_rule_paths_and_names_hide_documents_and_diffs() -> None:
    rules = load_rules(RULES)
    payments, disputes = Redaction.for_entity(rules.entities["payments"]), Redaction.for_entity(rules.entities["disputes"])
    document = {"blockchain": {"txHash": "0xsecret", "network": "eth"}, "metadata": {"client": {"ip": "1.2.3.4"}}}
    assert payments.value(document) == {"blockchain": {"txHash": REDACTED, "network": "eth"}, "metadata": {"client": REDACTED}}
    assert disputes.value({"evidence": [{"url": "https://x", "type": "link"}]}) == {
        "evidence": [{"url": REDACTED, "type": "link"}]}
    diffs = [FieldDiff("blockchain.txHash", "blockchain.txHash", "0xa", "0xb"),
             FieldDiff("blockchain", "blockchain", {"txHash": "0xa", "network": "eth"}, None, "missing_in_candidate"),
             FieldDiff("metadata.client", "metadata.client", {"ip": "1.2.3.4"}, {"ip": "5.6.7.8"}),
             FieldDiff("apiToken", "apiToken", "tok-1", "tok-2"),
             FieldDiff("status", "status", "completed", "failed")]
    assert [(d.control, d.candidate) for d in payments.diffs(diffs)] == [
        (REDACTED, REDACTED), ({"txHash": REDACTED, "network": "eth"}, None), (REDACTED, REDACTED),
        (REDACTED, REDACTED), ("completed", "failed")]


def test_rules_extend_the_names_per_entity(tmp_path: Path) -> None:
    rule = """\
        entity: users
        collection: users
        table: users
        fields: {_id: legacy_object_id, taxId: tax_id}
        redact_names: [taxId, mothers.maiden-name]
        """
    (tmp_path / "users.yaml").write_text(textwrap.dedent(rule))
    redaction = Redaction.for_entity(load_rules(tmp_path).entities["users"])
    assert redaction.value({"taxId": "1", "tax_id": "2", "profile": {"mothersMaidenName": "x"}, "tax": "3",
                            "apiKey": "k"}) == {
        "taxId": REDACTED, "tax_id": REDACTED, "profile": {"mothersMaidenName": REDACTED}, "tax": "3", "apiKey": REDACTED}
    (tmp_path / "users.yaml").write_text(textwrap.dedent(rule).replace("[taxId, mothers.maiden-name]", "[tax id, '']"))
    with pytest.raises(RulesError, match="bad 'redact_names' entry"):
        load_rules(tmp_path)
