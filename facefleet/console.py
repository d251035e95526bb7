"""How the CLI talks to people: progress and messages on stderr, results on stdout."""

from __future__ import annotations

from rich.console import Console, RenderableType
from rich.markup import escape
from rich.measure import Measurement

err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)


def error(message: str) -> None:
    """One line per problem, never a traceback. The message is shown as written (a file
    name or `facefleet[worker]` is not rich markup)."""
    err.print(f"[bold red]error:[/] {escape(message)}", markup=True)


def warn(message: str) -> None:
    err.print(f"[yellow]warning:[/] {escape(message)}", markup=True)


def print_table(table: RenderableType) -> None:
    """A result table on stdout at its natural width: a long cell (a presigned URL) is never
    cut to the terminal's width, the terminal wraps the line instead."""
    width = Measurement.get(out, out.options.update_width(1 << 16), table).maximum
    if width <= out.width:
        out.print(table)
    else:
        Console(highlight=False, width=width, force_terminal=out.is_terminal).print(table)
