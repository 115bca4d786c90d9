"""One redaction for everything that leaves the process (shadow/publish/redaction.py):
secret and PII names matched as words, secrets found inside values, masks that still
show whether two values differ, and the rules' `redaction:` section. The table rows
are what an operator would see on /mismatches; tests/replay/test_redaction_exits.py
pushes the same kinds of secrets through every exit of a running sidecar."""
from __future__ import annotations

import decimal
import textwrap
from pathlib import Path
from typing import Any

import pytest

from shadow.model import FieldDiff
from shadow.publish import secretvalues
from shadow.publish.redaction import (
    DEFAULT,
    MAX_TEXT,
    TOO_DEEP,
    Redaction,
    is_mask,
    names_hide,
    redact_document,
    redact_text,
    words,
)
from shadow.rules import RulesError, load_rules

RULES = Path(__file__).resolve().parents[2] / "rules" / "marketplace"
S, P = "secret", "pii"

#: collapsed path -> what its name says by default: "secret", "pii" or None (shown)
NAMES_TABLE: list[tuple[str, str | None]] = [
    # issue 18, finding 4: every name that was shown
    ("pwd", S), ("pass", S), ("passphrase", S), ("pin", S), ("otp", S), ("totp", S), ("mfaCode", S), ("jwt", S),
    ("bearer", S), ("session", S), ("sessionId", S), ("sid", S), ("key", S), ("pem", S), ("signature", S),
    ("pan", S), ("securityCode", S), ("accountNumber", S), ("routingNumber", S), ("socialSecurityNumber", S),
    ("taxId", S), ("dob", P), ("dateOfBirth", P), ("email", P), ("phone", P), ("address", P), ("creds", S),
    ("connectionString", S), ("dsn", S), ("databaseUrl", S), ("mnemonic", S), ("seedPhrase", S),
    ("walletPrivKey", S),
    # the same names in other spellings and places
    ("social_security_number", S), ("Social-Security-Number", S), ("user.socialSecurityNumber", S),
    ("PIN", S), ("pinCode", S), ("card.pin", S), ("user_pwd", S), ("db.pass", S), ("TOTP_SECRET", S),
    ("session_id", S), ("sessions[*].id", S), ("X-Session-Id", S), ("sessionid", S), ("mfa_code", S),
    ("tax_id", S), ("date_of_birth", P), ("birthDate", P), ("birthday", P), ("emails[*]", P),
    ("contactEmail", P), ("emailAddress", P), ("phoneNumber", P), ("mobile_phone", P), ("shippingAddress", P),
    ("billing_address.street", P), ("addressLine1", P), ("ipAddress", P), ("telephone", P),
    ("database_url", S), ("DATABASE_URL", S), ("seed_phrase", S), ("wallet.privKey", S), ("rsaprivatekey", S),
    # the names of the first release, any case and spelling
    ("apiKey", S), ("api_key", S), ("API_KEY", S), ("x-api-key", S), ("headers.X-Api-Key", S), ("xapikey", S),
    ("authorization", S), ("Authorization", S), ("headers.authorization", S),
    ("cookie", S), ("setCookie", S), ("cookies[*].value", S), ("privateKey", S), ("private_key", S),
    ("keys.privateKeyPem", S), ("ssn", S), ("SSN", S), ("profile.ssn", S), ("ssnLast4", S), ("user_ssn", S),
    ("cvv", S), ("card.cvv", S), ("cvv2", S), ("cvc", S), ("card.number", S), ("cardNumber", S),
    ("card_number", S), ("payment.card.number", S), ("creditCardNumber", S), ("credentials.pass", S),
    ("credentials", S), ("credential.passwd", S), ("passwd", S), ("apiToken", S), ("passwordHash", S),
    ("password", S), ("PASSWORD", S), ("passwordhash", S), ("password_hash", S), ("refreshTokens", S),
    ("refreshTokens[*].value", S), ("emailVerificationToken", S), ("apiSecret", S), ("client_secret", S),
    ("blockchain.txHash", S), ("passkeys[*].salt", S), ("accessKeyId", S), ("iban", S), ("bank.IBAN", S),
    # shown: look-alikes that are not secrets (a name is a run of words, not a piece of one)
    ("shipping", None), ("shippingMethod", None), ("pinned", None), ("spinner", None),
    ("keyword", None), ("keywords", None), ("monkey", None), ("keyboard", None), ("hotkey", None),
    ("company", None), ("companyName", None), ("panel", None), ("expand", None), ("japan", None),
    ("side", None), ("inside", None), ("sidebar", None), ("considered", None),
    ("passenger", None), ("passengers[*].name", None), ("compass", None), ("bypass", None), ("passive", None),
    ("dobby", None), ("adobe", None), ("phoneme", None), ("addressee", None), ("seed", None),
    ("name", None), ("businessName", None), ("lessons", None), ("classNames", None), ("number", None),
    ("card.last4", None), ("card.brand", None), ("cardholderName", None), ("api", None), ("status", None),
    ("amount.value", None), ("offers[*].status", None), ("code", None), ("statusCode", None), ("account", None),
    ("connection", None), ("database", None), ("url", None), ("hashtag", None), ("salty", None),
    # shown: a qualifier after the name: the field is about the secret, not the secret
    ("addressCount", None), ("address_type", None), ("emailVerified", None), ("email_confirmed", None),
    ("phoneVerifiedAt", None), ("tokenType", None), ("token_type", None), ("tokenExpiresAt", None),
    ("passwordUpdatedAt", None), ("password_changed_at", None), ("keyId", None), ("key_id", None),
    ("sessionTimeout", None), ("sessionCount", None), ("signatureAlgorithm", None), ("pinLength", None),
    ("otpEnabled", None), ("mfaCodeSentAt", None), ("dobVerified", None),
    # shown: harmless longer names win over the name inside them
    ("publicKey", None), ("passkeys[*].publicKey", None), ("primaryKey", None), ("idempotencyKey", None),
    ("cacheKey", None), ("partition_key", None),
    ("", None),
]


@pytest.mark.parametrize(("path", "kind"), NAMES_TABLE)
def test_names_as_words(path: str, kind: str | None) -> None:
    assert DEFAULT.kind(path) == kind
    assert DEFAULT.hides(path) is (kind is not None)
    assert names_hide(path) is (kind is not None)
    if path:
        masked = DEFAULT.value({"v": "some value"}, path)
        assert (masked == f"[{kind} object n=1 h={masked[-9:-1]}]") if kind else masked == {"v": "some value"}


@pytest.mark.parametrize(("text", "expected"), [
    ("cardNumber", ("card", "number")), ("card_number", ("card", "number")), ("CARD-NUMBER", ("card", "number")),
    ("APIKey", ("api", "key")), ("ssnLast4", ("ssn", "last", "4")), ("offers[*].status", ("offers", "status")),
    ("", ()), ("___", ()), ("é", ()), ("a" * 10_000, ("a" * 10_000,)),
])
def test_words(text: str, expected: tuple[str, ...]) -> None:
    assert words(text) == expected


JWT = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7bq0vSx\nq2lkYWxsZQ==\n-----END RSA PRIVATE KEY-----"

#: a string anywhere in a document -> (what must not survive, what must survive)
VALUES_TABLE: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = [
    (JWT, (JWT[:20], JWT[-20:]), ("[secret len=",)),
    (f"note: Bearer {JWT}", ("eyJ", "SflKx"), ("note: Bearer [secret len=",)),
    (f"see {JWT}, then", ("eyJ",), ("see [secret", ", then")),
    ("Authorization: Bearer 8a7f9c2e41b0d3f5", ("8a7f9c2e41b0d3f5",), ("Bearer [secret",)),
    ("bearer%20abc123def456", ("abc123def456",), ("bearer%20[secret",)),
    ("Basic dXNlcjpwYXNz", ("dXNlcjpwYXNz",), ("Basic [secret",)),
    ("Bearer authentication is required", (), ("Bearer authentication is required",)),
    ("Basic plan", (), ("Basic plan",)),
    ("https://u:p4ss@host.example/x?token=abc", ("p4ss", "abc"), ("https://u:[secret", "@host.example/x?token=[secret")),
    ("postgres://app:s3cr3t@db:5432/shop?sslmode=require", ("s3cr3t",), ("postgres://app:[secret", "@db:5432/shop?sslmode=require")),
    ("https://ghp_16C7e42F292c6912E7710c8@github.com/o/r.git", ("ghp_16C7e42F",), ("https://[secret", "@github.com/o/r.git")),
    ("https://api.example/cb?code=AUTHCODE42&state=xyz", ("AUTHCODE42",), ("code=[secret", "state=xyz")),
    ("https://x/y?access_token=AT1&api_key=AK2&sig=SG3&apikey=AK4&page=2", ("AT1", "AK2", "SG3", "AK4"), ("page=2",)),
    ("https://b.s3.amazonaws.com/f?X-Amz-Signature=ab12&X-Amz-Credential=AKIA%2Fx&X-Amz-Date=20260101",
     ("ab12", "AKIA%2Fx"), ("X-Amz-Date=20260101",)),
    ("https://app/cb#access_token=FRAG9&token_type=bearer", ("FRAG9",), ("token_type=bearer",)),
    ("/callback?token=REL77&next=/home", ("REL77",), ("next=/home",)),
    ("host=db user=app password=hunter2 dbname=shop", ("hunter2",), ("host=db user=app", "dbname=shop")),
    ('{"password": "correct horse battery", "user": "ann"}', ("correct horse",), ('"user": "ann"',)),
    ("pin: 4821, retry", ("4821",), ("pin: [secret", ", retry")),
    ("phone: +49 151 2345 6789\nnext line", ("151 2345",), ("phone: [pii len=17 ", "]\nnext line")),
    ("Authorization: Basic dXNlcjpwYXNz", ("dXNlcjpwYXNz",), ("Authorization: Basic [secret",)),
    ("https://example.com/products?page=2&sort=price", (), ("https://example.com/products?page=2&sort=price",)),
    (PEM, ("MIIEowIBAAKCAQEA7bq0vSx", "q2lkYWxsZQ=="), ("-----BEGIN RSA PRIVATE KEY-----[secret", "-----END RSA PRIVATE KEY-----")),
    ("-----BEGIN PRIVATE KEY-----\nMIIunterminated", ("MIIunterminated",), ("-----BEGIN PRIVATE KEY-----[secret",)),
    ("4111111111111111", ("4111111111111111",), ("[secret len=16",)),
    ("card 4111 1111 1111 1111 exp 12/29", ("4111 1111 1111 1111",), ("card [secret", "exp 12/29")),
    ("5500-0000-0000-0004", ("5500-0000-0000-0004",), ("[secret",)),
    ("378282246310005", ("378282246310005",), ("[secret",)),
    ("order 4111111111111112", (), ("order 4111111111111112",)),  # fails the Luhn check
    ("order 1234567890123452", (), ("order 1234567890123452",)),  # Luhn-valid, but no card starts with 1
    ("41111111111111110000", (), ("41111111111111110000",)),  # 20 digits: not a card
    ("amount 2500000000007000000 wei", (), ("amount 2500000000007000000 wei",)),  # Luhn-valid, but an amount
    ("29390.660000000000000001", (), ("29390.660000000000000001",)),  # Luhn-valid fraction digits of a decimal
    ("4111111111111111.5", (), ("4111111111111111.5",)),  # the integer part of a decimal
    ("paid with 4111111111111111.", ("4111111111111111",), ("paid with [secret", "].")),  # a card ends a sentence
    ("ann@example.com", ("ann@example.com",), ("[pii len=15",)),
    ("write to Ann.Lee+shop@mail.example.co.uk today", ("Ann.Lee",), ("write to [pii", " today")),
    ("plain words, 2026-12-06, #42, v1.2.3", (), ("plain words, 2026-12-06, #42, v1.2.3",)),
]


@pytest.mark.parametrize(("text", "gone", "kept"), VALUES_TABLE)
def test_secrets_inside_values(text: str, gone: tuple[str, ...], kept: tuple[str, ...]) -> None:
    for shown in (redact_text(text), DEFAULT.value({"note": text})["note"], DEFAULT.value([[text]])[0][0]):
        assert not [secret for secret in gone if secret in shown], shown
        assert all(part in shown for part in kept), shown


def test_masks_show_that_and_how_two_values_differ_but_not_the_values() -> None:
    same = DEFAULT.side("tok-" + "a" * 36, "apiToken"), DEFAULT.side("tok-" + "a" * 36, "apiToken")
    truncated = DEFAULT.side("tok-" + "a" * 28, "apiToken")
    assert same[0] == same[1] and is_mask(same[0]) and same[0].startswith("[secret len=40 h=")
    assert truncated.startswith("[secret len=32 h=") and truncated != same[0]
    assert DEFAULT.side(1234, "pin") != DEFAULT.side("1234", "pin")  # a type change shows
    assert DEFAULT.side(None, "pin") is None and DEFAULT.value({"pin": None, "hasPassword": True}) == {
        "pin": None, "hasPassword": True}  # null and booleans: one bit, shown
    assert DEFAULT.side([1, 2, 3], "tokens").startswith("[secret list n=3 ")
    assert DEFAULT.side({"a": 1}, "credentials").startswith("[secret object n=1 ")
    assert DEFAULT.side(decimal.Decimal("12.50"), "pan").startswith("[secret len=5 ")
    assert DEFAULT.side("ann@example.com", "email").startswith("[pii len=15 h=")
    assert DEFAULT.value(4111111111111111) .startswith("[secret number ")  # a card number as an integer
    assert DEFAULT.value(4111111111111112) == 4111111111111112


def test_the_hash_is_keyed_so_a_logged_mask_cannot_be_brute_forced_offline() -> None:
    import hashlib

    before = DEFAULT.side("4821", "pin")
    digest = before.rsplit("h=", 1)[1][:-1]
    assert digest not in hashlib.sha256(b"s4821").hexdigest() and digest not in hashlib.sha256(b"4821").hexdigest()
    original = secretvalues._key
    try:
        secretvalues.set_key("another key, 16+ chars")
        assert DEFAULT.side("4821", "pin") != before
        secretvalues.set_key(original)
        assert DEFAULT.side("4821", "pin") == before
        with pytest.raises(ValueError, match="at least 16"):
            secretvalues.set_key("short")
    finally:
        secretvalues._key = original


PATHOLOGICAL = 200_000


@pytest.mark.timeout(120)  # turns a catastrophic backtrack (hours) into a failure; linear is milliseconds
@pytest.mark.parametrize("text", [
    "eyJ" * PATHOLOGICAL, "eyJa." * PATHOLOGICAL, "a" * PATHOLOGICAL + "@", "a@" * PATHOLOGICAL,
    "a." * PATHOLOGICAL + "@x", "x@" + "a." * PATHOLOGICAL, "4 " * PATHOLOGICAL, "4-" * PATHOLOGICAL + "x",
    "4" * PATHOLOGICAL, "://" * PATHOLOGICAL, "a://" * PATHOLOGICAL, "https://" + "u:" * PATHOLOGICAL,
    "https://h/?" + "a=&" * PATHOLOGICAL, "https://h/?" + "a=;" * PATHOLOGICAL, "https://h/?" + "a" * PATHOLOGICAL,
    "https://h/?token=" + "x;" * PATHOLOGICAL, "a=" * PATHOLOGICAL, "password=" * PATHOLOGICAL, "a:" * PATHOLOGICAL,
    "password: " + '"' * PATHOLOGICAL, "Bearer " * PATHOLOGICAL, "bearer%20" * PATHOLOGICAL,
    "-----BEGIN " * PATHOLOGICAL, "-----BEGIN X-----" * PATHOLOGICAL, "x" * 64 + "=" + "y" * PATHOLOGICAL,
])
def test_hostile_values_take_linear_time(text: str) -> None:
    whole = secretvalues.apply(text, DEFAULT.patterns.spans(text, DEFAULT.kind))  # the patterns over all of it
    assert isinstance(whole, str)
    shown = redact_text(text)  # what leaves the process: cut at MAX_TEXT
    assert len(shown) < MAX_TEXT + 100 and shown.endswith(f" …[cut: {len(text)} characters in all]")
    assert isinstance(DEFAULT.value({"note": text, text[:1000]: 1}), dict)


def test_a_secret_across_the_cut_is_masked_whole() -> None:
    card = "4111 1111 1111 1111"
    for at in range(MAX_TEXT - len(card), MAX_TEXT + 1, 3):
        shown = redact_text("x " * (at // 2) + " " * (at % 2) + card + " tail" * 5000)
        assert "1111" not in shown and "4111" not in shown, at
    pem = "x" * (MAX_TEXT - 10) + "\n-----BEGIN PRIVATE KEY-----\n" + "A" * 5000 + "\n-----END PRIVATE KEY-----"
    assert "AAAA" not in redact_text(pem)


@pytest.mark.timeout(120)  # turns names times words (minutes for these keys) into a failure; indexed: milliseconds
@pytest.mark.parametrize(("key", "kind"), [
    ("aB" * 50_000, S), ("a_" * 50_000, S), ("a-" * 50_000, S),  # more than 64 words in one field name: masked unread
    ("aB" * 32, None), ("a" * 100_000, None), ("password" * 10_000, S), ("p" * 100_000 + "assword", S),
    ("x." * 50_000, None), ("x." * 50_000 + "password", S), ("[*]." * 50_000, None),
])
def test_hostile_keys_are_judged_in_linear_time(key: str, kind: str | None) -> None:
    assert Redaction().kind(key) == kind
    [shown] = DEFAULT.value({key: "v"}).values()
    assert shown.startswith(f"[{kind} len=1 ") if kind else shown == "v"


def test_hostile_documents_do_not_break_redaction() -> None:
    document: Any = {"": 1, ".": 2, "[*]": 3, "a" * 100_000: 4, "pass\x00word": "x", "\u202epassword": "y",
                     "nested": {"1": {"apiKey": "k"}}, "list": [[{"secret": "s"}]], "bad": "\ud800" + JWT,
                     JWT: "a token as a key", b"raw": b"bytes", 7: 7.5, "when": decimal.Decimal("1e-18")}
    redacted = redact_document(document)
    assert is_mask(redacted["nested"]["1"]["apiKey"]) and is_mask(redacted["list"][0][0]["secret"])
    assert is_mask(redacted["\u202epassword"]) and redacted[""] == 1
    cut = " …[cut: 100000 characters in all]"
    long_keys = [(len(key), key.endswith(cut), value) for key, value in redacted.items() if str(key)[:3] == "aaa"]
    assert long_keys == [(MAX_TEXT + len(cut), True, 4)]  # cut, its length said
    assert JWT not in str(redacted) and redacted["bad"].startswith("\ud800[secret")
    assert redacted[b"raw"] == b"bytes" and redacted[7] == 7.5 and redacted["when"] == decimal.Decimal("1e-18")
    deep: Any = "leaf"
    for _ in range(5000):
        deep = {"x": [deep]}
    assert TOO_DEEP in str(redact_document(deep))
    assert DEFAULT.side(deep, "password") == "[secret too deep to hash]"


def test_rule_paths_and_names_hide_documents_and_diffs() -> None:
    rules = load_rules(RULES)
    payments, disputes = Redaction.for_entity(rules.entities["payments"]), Redaction.for_entity(rules.entities["disputes"])
    masked = payments.value({"blockchain": {"txHash": "0xsecret", "network": "eth"}, "metadata": {"client": {"ip": "1.2.3.4"}}})
    assert is_mask(masked["blockchain"]["txHash"]) and masked["blockchain"]["network"] == "eth"
    assert masked["metadata"]["client"].startswith("[secret object n=1 ")
    assert is_mask(disputes.value({"evidence": [{"url": "https://x", "type": "link"}]})["evidence"][0]["url"])
    diffs = payments.diffs([FieldDiff("apiToken", "apiToken", "tok-1", "tok-2"),
                            FieldDiff("status", "status", "completed", "failed"),
                            FieldDiff("blockchain", "blockchain", {"txHash": "0xa", "network": "eth"}, None,
                                      "missing_in_candidate")])
    assert is_mask(diffs[0].control) and is_mask(diffs[0].candidate) and diffs[0].control != diffs[0].candidate
    assert (diffs[1].control, diffs[1].candidate) == ("completed", "failed")
    assert is_mask(diffs[2].control["txHash"]) and diffs[2].control["network"] == "eth" and diffs[2].candidate is None


USERS = """\
entity: users
collection: users
table: users
fields: {_id: legacy_object_id, taxId: tax_id}
"""


def _entity_with(tmp_path: Path, section: str) -> Redaction:
    (tmp_path / "users.yaml").write_text(USERS + textwrap.dedent(section))
    return Redaction.for_entity(load_rules(tmp_path).entities["users"])


def test_rules_extend_the_names_and_patterns_per_entity(tmp_path: Path) -> None:
    redaction = _entity_with(tmp_path, """\
        redact_names: [mothers.maiden-name]
        redaction:
          names: [loyaltyNumber]
          pii: [nickname]
          patterns: ['ORD-[0-9]{4}-(S[0-9]+)', 'internal-[a-z]{8}']
        """)
    masked = redaction.value({"profile": {"mothersMaidenName": "x", "nick_name": "Bo"}, "loyalty_number": "L1",
                              "tax": "3", "note": "order ORD-1234-S99 via internal-abcdefgh", "apiKey": "k"})
    assert masked["tax"] == "3" and is_mask(masked["apiKey"]) and is_mask(masked["loyalty_number"])
    assert is_mask(masked["profile"]["mothersMaidenName"]) and masked["profile"]["nick_name"].startswith("[pii ")
    assert masked["note"].startswith("order ORD-1234-[secret len=3 ") and "internal-abcdefgh" not in masked["note"]


def test_rules_show_names_patterns_and_pii(tmp_path: Path) -> None:
    redaction = _entity_with(tmp_path, """\
        redaction:
          show: [address, key, shipping.pin]
          show_patterns: [card]
          show_pii: true
        """)
    document = {"address": "1 Main St", "apiKey": "k", "cacheKey": "c", "shippingPin": "9", "pin": "1", "card": "4111111111111111",
                "email": "ann@example.com", "note": "mail ann@example.com", "dob": "1990-01-01", "password": "pw"}
    masked = redaction.value(document)
    shown = {name for name, value in masked.items() if value == document[name]}
    assert shown == {"address", "cacheKey", "shippingPin", "card", "email", "note", "dob"}
    assert DEFAULT.value(document)["address"].startswith("[pii ")  # the entity's rules only


@pytest.mark.parametrize(("section", "message"), [
    ("redaction: [names]\n", "'redaction' must be a mapping"),
    ("redaction: {secrets: [x]}\n", "unknown key 'secrets' in entity 'users' redaction"),
    ("redaction: {names: [tax id]}\n", "bad 'names' entry 'tax id'"),
    ("redaction: {show: ['']}\n", "bad 'show' entry ''"),
    ("redaction: {pii: [1]}\n", "'pii' items must be strings"),
    ("redaction: {patterns: ['(unclosed']}\n", "refused: not a valid RE2 pattern: missing ): (unclosed"),
    ("redaction: {patterns: ['(a)\\1']}\n", "refused: not a valid RE2 pattern"),
    ("redaction: {patterns: ['(?=x)y']}\n", "refused: not a valid RE2 pattern"),
    ("redaction: {patterns: ['a*']}\n", "refused: matches the empty string"),
    ("redaction: {patterns: ['" + "a" * 201 + "']}\n", "refused: longer than 200 characters"),
    ("redaction: {patterns: ['((a{1,100}){1,100}){1,100}']}\n", "refused"),
    ("redaction: {patterns: ['(x+x+)+y', '[a-z]{1000}']}\n", "refused: too complex"),
    ("redaction: {patterns: [" + ", ".join(f"'p{n}'" for n in range(21)) + "]}\n", "at most 20 patterns"),
    ("redaction: {show_patterns: [cards]}\n", "unknown value pattern 'cards' in 'show_patterns'"),
    ("redaction: {show_pii: yes please}\n", "'show_pii' must be true or false"),
])
def test_bad_redaction_sections_are_refused_with_file_and_line(tmp_path: Path, section: str, message: str) -> None:
    (tmp_path / "users.yaml").write_text(USERS + section)
    with pytest.raises(RulesError) as caught:
        load_rules(tmp_path)
    assert message in str(caught.value) and "users.yaml:5" in str(caught.value), str(caught.value)


def test_the_rules_and_the_redaction_name_the_same_value_patterns() -> None:
    from shadow.rules import redaction as rules_redaction

    assert rules_redaction.BUILTIN_PATTERNS == secretvalues.BUILTIN_PATTERNS


def test_the_json_schema_knows_the_redaction_section() -> None:
    import jsonschema

    from shadow.rules.schema import rule_schema

    schema = rule_schema()
    good = {"entity": "u", "collection": "u", "table": "u", "fields": {},
            "redaction": {"names": ["taxId"], "pii": ["nickname"], "patterns": ["ORD-[0-9]+"], "show": ["address"],
                          "show_patterns": ["card"], "show_pii": False}}
    jsonschema.validate(good, schema)
    for bad in ({"show_patterns": ["cards"]}, {"patterns": ["x" * 201]}, {"other": 1}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({**good, "redaction": bad}, schema)


def test_the_sidecar_takes_a_shared_key_and_refuses_a_short_one(tmp_path: Path) -> None:
    from shadow.config import Config, ConfigError

    base = {"upstream": "http://127.0.0.1:1", "rules": str(tmp_path)}
    with pytest.raises(ConfigError, match="at least 16") as refused:
        Config.parse(base, {"SHADOW_REDACTION_KEY": "short-key"})
    assert "short-key" not in str(refused.value) and "SHADOW_REDACTION_KEY" in str(refused.value)
    key = "a shared key for every pod"
    config = Config.parse(base, {"SHADOW_REDACTION_KEY": key})
    assert config.redaction_key == key and key not in repr(config)


def test_the_operations_guide_lists_the_built_in_names() -> None:
    import re

    from shadow.publish.redaction import PII_NAMES, SECRET_NAMES

    guide = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
    secrets_listed = re.search(r"\* secrets: `([^`]*)`", guide)
    pii_listed = re.search(r"\* PII: `([^`]*)`", guide)
    assert secrets_listed and pii_listed
    assert secrets_listed.group(1).split() == list(SECRET_NAMES)
    assert pii_listed.group(1).split() == list(PII_NAMES)
