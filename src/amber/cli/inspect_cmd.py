"""`amber inspect FILE`: what a file holds, from its manifest alone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from amber.cli.output import fail, human_bytes, stdout
from amber.errors import AmberError

_DEFAULT_ROWS = 50


def register(app: typer.Typer) -> None:
    app.command("inspect")(inspect)


def inspect(
    file: Path = typer.Argument(..., help="The .amber file."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON for machines."),
    show_all: bool = typer.Option(False, "--all", help=f"List every tensor, not {_DEFAULT_ROWS}."),
    depth: int = typer.Option(4, "--depth", min=0, help="Levels of the object tree to show."),
) -> None:
    """Show the tensors, metadata and producing environment of FILE without loading it."""
    import amber

    try:
        with amber.open(file, verify="off", mmap=False) as f:  # one read of the manifest
            info, tree = f.info, f.outline(max_depth=depth)
    except AmberError as exc:
        fail(exc)
    if as_json:
        typer.echo(json.dumps(info.to_dict(), indent=2, ensure_ascii=False))
        return
    summary = Table.grid(padding=(0, 2))
    summary.add_column(style="bold")
    summary.add_column(overflow="fold")
    summary.add_row("file", str(info.path))
    summary.add_row("format", info.format_version)
    summary.add_row("size", f"{human_bytes(info.size)} ({info.size} bytes)")
    summary.add_row("object", info.object_type)
    summary.add_row("tensors", f"{len(info.tensors)} ({human_bytes(info.tensor_bytes)})")
    summary.add_row("created", f"{info.created_at} by amber {info.amber_version}")
    env = info.environment
    packages = ", ".join(f"{k} {v}" for k, v in env.get("packages", {}).items())
    summary.add_row("environment", f"python {env.get('python')} {env.get('platform')}; {packages}")
    summary.add_row("manifest", info.manifest_digest)
    if info.metadata:
        summary.add_row("metadata", json.dumps(info.metadata, ensure_ascii=False))
    history = info.extra.get("store")
    if history:
        summary.add_row(
            "from store",
            f"{history.get('name')}@{history.get('version')} "
            + json.dumps(
                {k: history.get(k) for k in ("metrics", "tags", "parent", "message")},
                ensure_ascii=False,
            ),
        )
    if info.untrusted_types:
        summary.add_row(
            "[red]untrusted[/]",
            "[red]" + ", ".join(info.untrusted_types) + "[/] (load needs trusted=[...])",
        )
    if info.graph_error:
        summary.add_row("[red]invalid[/]", f"[red]{info.graph_error}[/]")
    stdout.print(summary)
    if depth:
        stdout.print(_render(tree))
    if not info.tensors:
        return
    table = Table(show_edge=False, header_style="bold")
    for column in ("tensor", "dtype", "shape", "size"):
        table.add_column(column, justify="right" if column == "size" else "left")
    rows = info.tensors if show_all else info.tensors[:_DEFAULT_ROWS]
    for t in rows:
        shape = "(" + ", ".join(map(str, t.shape)) + ("," if len(t.shape) == 1 else "") + ")"
        table.add_row(
            t.name, t.dtype + (" F" if t.order == "F" else ""), shape, human_bytes(t.nbytes)
        )
    stdout.print(table)
    if len(rows) < len(info.tensors):
        stdout.print(f"... {len(info.tensors) - len(rows)} more tensors (use --all)")


def _render(outline: Any) -> Tree:
    def label(item: Any) -> Text:
        text = Text(item.label)
        if item.untrusted:
            text.stylize("bold red")
            text.append("  (untrusted)", style="red")
        return text

    root = Tree(label(outline))
    stack = [(root, outline)]
    while stack:
        branch, item = stack.pop()
        for child in item.children:
            stack.append((branch.add(label(child)), child))
        if item.hidden:
            branch.add(Text(f"... {item.hidden} more", style="dim"))
    return root
