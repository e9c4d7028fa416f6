"""Errors the store raises. Each says what was wrong, where, and what to do."""

from __future__ import annotations

from dataclasses import dataclass


class StoreError(Exception):
    """Base class of every error the store reports to a user."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input: `row` is the 1-based data row (header excluded), or None
    when the problem is with the file as a whole; `column` is None when no column is to blame."""

    reason: str
    row: int | None = None
    column: str | None = None

    def __str__(self) -> str:
        where = []
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.column is not None:
            where.append(f"column '{self.column}'")
        return f"{', '.join(where)}: {self.reason}" if where else self.reason


class ValidationError(StoreError):
    """Input refused; nothing of it was stored. Carries up to a few problems, first one first."""

    def __init__(self, problems: list[Problem], source: str = "input", total: int | None = None):
        self.problems = problems
        self.source = source
        self.total = total if total is not None else len(problems)
        lines = [f"{source}: refused, nothing stored."]
        lines += [f"  {p}" for p in problems]
        if self.total > len(problems):
            lines.append(f"  ... and {self.total - len(problems)} more problem(s) of the same kinds")
        super().__init__("\n".join(lines))


class DatabaseLockedError(StoreError):
    """Another process holds the DuckDB file (DuckDB allows one writing process per file)."""


class SchemaMismatchError(StoreError):
    """A database written by a newer Telltale, or otherwise not ours."""
