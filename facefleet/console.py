"""How the CLI talks to people: progress and messages on stderr, results on stdout."""

from __future__ import annotations

from rich.console import Console

err = Console(stderr=True, highlight=False, soft_wrap=True)


def error(message: str) -> None:
    """One line per problem, never a traceback."""
    err.print(f"[bold red]error:[/] {message}", markup=True)


def warn(message: str) -> None:
    err.print(f"[yellow]warning:[/] {message}", markup=True)
