"""Listings (`amber ls`, `versions`, `search`, `cache ls`...) that never cut what the user
asked for.

At a terminal, a listing is a table sized to the terminal: columns are chosen by priority
and width, so a narrow terminal drops the least important columns (and says which) instead
of truncating values with an ellipsis; the columns that stay fold long values onto more
lines. Piped into another program, a listing is tab-separated text with a header line, one
row per line, every value whole (``--json`` gives the same data as JSON). Values are
escaped by ``safe_text``: a tab, a newline or a control character never breaks a row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import typer
from rich.text import Text

from amber.cli.output import line, safe, safe_text, stdout

_GAP = 3  # " │ " between columns
_FLOOR = 8  # the narrowest a column is folded to


@dataclass(frozen=True)
class Column:
    """``priority``: 0 is always shown; higher numbers go first when space runs out.
    ``fold``: long values may fold onto more lines (messages, metrics); other columns keep
    their width. ``right``: right-aligned (numbers)."""

    header: str
    priority: int = 0
    fold: bool = False
    right: bool = False
    min_width: int = 12  # a folding column is not squeezed below this


def print_listing(columns: Sequence[Column], rows: Sequence[Sequence[Any]]) -> None:
    """Print ``rows`` (one value per column) as a table at a terminal, else as TSV.

    A dict value (metrics, tags) is shown as ``key=value`` items, a list as its items: one
    per line in a table, comma-separated in TSV, where floats keep every digit."""
    terminal = stdout.is_terminal
    cells = [[_cell(value, terminal) for value in row] for row in rows]
    if not terminal:  # cells are escaped: a tab or newline inside a value shows as \t, \n
        typer.echo("\t".join(c.header for c in columns))
        for row in cells:
            typer.echo("\t".join(row))
        return
    widths = _fit(columns, cells, stdout.width)
    shown = sorted(widths)
    from rich.table import Table

    table = Table(show_edge=False, header_style="bold", pad_edge=False)
    for i in shown:
        column = columns[i]
        table.add_column(
            safe(column.header),
            justify="right" if column.right else "left",
            overflow="fold",
            no_wrap=not column.fold,
            width=widths[i],
        )
    for row in cells:
        table.add_row(*(Text(row[i]) for i in shown))  # escaped by _cell, never markup
    stdout.print(table, soft_wrap=False)
    hidden = [columns[i].header for i in range(len(columns)) if i not in shown]
    if hidden:
        stdout.print(
            line(
                safe(
                    f"({len(hidden)} more column{'s' if len(hidden) > 1 else ''}: "
                    f"{', '.join(hidden)}; widen the terminal, or use --json)",
                    "dim",
                )
            ),
            soft_wrap=False,
        )


def _cell(value: Any, terminal: bool) -> str:
    if isinstance(value, dict):
        value = [f"{k}={_number(v, terminal)}" for k, v in value.items()]
    if isinstance(value, (list, tuple)):
        return ("\n" if terminal else ", ").join(safe_text(item) for item in value)
    return safe_text("" if value is None else value)


def _number(value: Any, short: bool) -> str:
    """Every digit of a float in TSV; at a terminal, the store commands' short form."""
    if isinstance(value, float) and not short:
        return repr(value)
    from amber.cli.store_common import number

    return number(value)


def _natural(column: Column, cells: list[list[str]], i: int) -> int:
    return max([len(column.header), *(max(map(len, row[i].splitlines() or [""])) for row in cells)])


def _fit(columns: Sequence[Column], cells: list[list[str]], width: int) -> dict[int, int]:
    """Column index -> width, for the columns to show: every priority-0 column, then the
    others by priority while their width (a folding column's minimum) fits. Widths are set
    here, not by rich, so the table never passes the terminal's edge (rich crops a table
    whose minimum widths add up to more than the terminal)."""
    natural = {i: _natural(c, cells, i) for i, c in enumerate(columns)}
    least = {
        i: min(c.min_width, natural[i]) if c.fold else natural[i] for i, c in enumerate(columns)
    }
    chosen = [i for i, c in enumerate(columns) if c.priority == 0]
    used = sum(least[i] + _GAP for i in chosen)
    for i in sorted(
        (i for i, c in enumerate(columns) if c.priority), key=lambda i: columns[i].priority
    ):
        if used + least[i] + _GAP <= width:
            chosen.append(i)
            used += least[i] + _GAP
    widths = {i: least[i] for i in chosen}
    # The columns that must stay may not fit even alone: fold them narrower, the folding
    # ones first, widest first, never below a few characters (values fold, never cut).
    for group in ([i for i in chosen if columns[i].fold], chosen):
        while used > width:
            widest = max(group, key=lambda i: widths[i], default=None)
            if widest is None or widths[widest] <= _FLOOR:
                break
            cut = min(used - width, widths[widest] - _FLOOR, max(1, widths[widest] // 4))
            widths[widest] -= cut
            used -= cut
    spare = width - used
    # Space left goes to folding columns, most important first, up to their natural width.
    for i in sorted(chosen, key=lambda i: columns[i].priority):
        if spare <= 0:
            break
        grow = min(spare, natural[i] - widths[i])
        widths[i] += grow
        spare -= grow
    return widths
