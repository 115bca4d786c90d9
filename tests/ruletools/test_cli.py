"""`shadow rules check | test | schema` as a user runs them."""
from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from shadow.cli import main

SHIPPED = Path(__file__).resolve().parents[2] / "rules" / "marketplace"
PAYMENTS = (SHIPPED / "payments.yaml").read_text()

BAD_FILES = {  # kind -> (edit of the shipped payments.yaml, line, words in the message)
    "unknown key": (("  status: status\n", "  status: status\n  colour: red_column\n  currency: {column: currency, sample: 1}\n"),
                    18, "unknown key 'sample' in field 'currency'"),
    "wrong type": (("  - GET /api/payments/{id}\n", "  - GET /api/payments/{id}\n  - route: GET /api/x/{id}\n    list: yes please\n"),
                   26, "'list' must be true or false, got str 'yes please'"),
    "unknown normalizer": (("{column: amount, as: decimal}", "{column: amount, as: decimals}"), 14,
                           "unknown normalizer 'decimals'"),
    "bad path template": (("  - GET /api/payments/{id}\n", "  - GET /api/payments/{payment id}\n"), 24, "bad path template"),
    "duplicate route": (("  - GET /api/payments/{id}\n", "  - GET /api/payments/{id}\n  - GET /api/payments/{paymentId}\n"),
                        25, "duplicate route 'GET /api/payments/{paymentId}'"),
}


def copy_rules(tmp_path: Path, edit: tuple[str, str] | None = None) -> Path:
    folder = tmp_path / "rules"
    folder.mkdir()
    for path in SHIPPED.glob("*.yaml"):
        text = path.read_text()
        if edit is not None and path.name == "payments.yaml":
            assert edit[0] in text
            text = text.replace(edit[0], edit[1], 1)
        (folder / path.name).write_text(text)
    return folder


def test_check_passes_on_the_shipped_rules(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", "check", str(SHIPPED)]) == 0
    assert "OK — 10 entities" in capsys.readouterr().out


@pytest.mark.parametrize("kind", sorted(BAD_FILES))
def test_check_fails_with_file_and_line_for_each_kind_of_bad_file(tmp_path: Path, kind: str,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    edit, line, message = BAD_FILES[kind]
    folder = copy_rules(tmp_path, edit)
    assert main(["rules", "check", str(folder)]) == 1
    errors = capsys.readouterr().err
    assert f"{folder / 'payments.yaml'}:{line}: " in errors and message in errors, errors


def test_check_warns_about_expired_known_divergences(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = copy_rules(tmp_path, ("routes:\n", "known:\n  - {path: metadata.channel, reason: old, expires: 2020-01-01}\nroutes:\n"))
    assert main(["rules", "check", str(folder)]) == 0
    assert "expired on 2020-01-01" in capsys.readouterr().err


def test_shipped_rule_tests_pass(capsys: pytest.CaptureFixture[str]) -> None:
    files = sorted(str(path) for path in (SHIPPED / "tests").glob("*.yaml"))
    assert len(files) >= 5
    assert main(["rules", "test", *files]) == 0
    out = capsys.readouterr().out
    assert "SUCCESS" in out and "FAIL " not in out


def test_a_wrong_expectation_fails_with_its_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = copy_rules(tmp_path)
    (folder / "tests").mkdir()
    case = folder / "tests" / "wrong.yaml"
    case.write_text("rules: ..\ntests:\n  - name: expects a match\n    entity: payments\n"
                    "    control: {_id: 65a1b2c3d4e5f60718293a4b, status: completed}\n"
                    "    candidate: {_id: 65a1b2c3d4e5f60718293a4b, status: failed}\n"
                    "    expect: {outcome: match}\n"
                    "  - name: typo\n    entity: payments\n    control: {}\n    candidate: {}\n"
                    "    expect: {outcome: match, path: []}\n")
    assert main(["rules", "test", str(case)]) == 1
    out = capsys.readouterr().out
    assert f"FAIL  expects a match ({case}:3)" in out and "expected match, got mismatch" in out
    assert "status: 'completed' != 'failed'" in out
    assert "unknown key 'path'" in out


def test_schema_describes_the_shipped_files_and_refuses_unknown_keys(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", "schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    validator = jsonschema.Draft202012Validator(schema)
    for path in SHIPPED.glob("*.yaml"):
        document = json.loads(json.dumps(yaml.safe_load(path.read_text()), default=str))
        assert not list(validator.iter_errors(document)), path
    bad = json.loads(json.dumps(yaml.safe_load(PAYMENTS), default=str))
    bad["fields"]["status"] = {"column": "status", "defualt": 1}
    assert list(validator.iter_errors(bad))
