"""How the CLI talks to people: progress and messages on stderr, results on stdout."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape

err = Console(stderr=True, highlight=False, soft_wrap=True)


def error(message: str) -> None:
    """One line per problem, never a traceback. The message is shown as written (a file
    name or `facefleet[worker]` is not rich markup)."""
    err.print(f"[bold red]error:[/] {escape(message)}", markup=True)


def warn(message: str) -> None:
    err.print(f"[yellow]warning:[/] {escape(message)}", markup=True)
