"""What a rule file can be told: one problem with its file:line, and the error that
carries every problem of a load. Below every parser (reader.py reports these) and
below the rule types, so that nothing here imports the rest of the package."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RuleIssue:
    """One problem in a rule file."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


class RulesError(Exception):
    """The rules did not load; `.issues` lists every problem with its file:line."""

    def __init__(self, issues: list[RuleIssue]) -> None:
        self.issues = list(issues)
        super().__init__("\n".join(str(issue) for issue in self.issues))
