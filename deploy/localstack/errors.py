"""The one error the local stack reports to its user."""

from __future__ import annotations


class StackError(RuntimeError):
    """A setup problem, reported as one line (exit status 2)."""
