"""`amber inspect FILE`: what a file holds, from its manifest alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from amber.cli.output import Summary, echo_json, fail, human_bytes, json_text, line, safe, stdout
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
        fail(exc, as_json=as_json)
    if as_json:
        echo_json({**info.to_dict(), "outline": tree.to_dict()})
        return
    # Every value below comes from the file: each cell is escaped text, never markup.
    summary = Summary()
    summary.add_row("file", safe(info.path))
    summary.add_row("format", safe(info.format_version))
    summary.add_row("size", safe(f"{human_bytes(info.size)} ({info.size} bytes)"))
    summary.add_row("object", safe(info.object_type))
    summary.add_row("tensors", safe(f"{len(info.tensors)} ({human_bytes(info.tensor_bytes)})"))
    summary.add_row("created", safe(f"{info.created_at} by amber {info.amber_version}"))
    env = info.environment
    saved = env.get("packages")
    packages = ", ".join(f"{k} {v}" for k, v in saved.items()) if isinstance(saved, dict) else ""
    summary.add_row(
        "environment", safe(f"python {env.get('python')} {env.get('platform')}; {packages}")
    )
    # A digest is copied whole: on one line, never folded (it may pass the terminal's edge).
    summary.add_line("manifest", safe(info.manifest_digest))
    if info.metadata:
        summary.add_row("metadata", safe(json_text(info.metadata, indent=None)))
    history = info.extra.get("store")  # a dict (FileInfo checks), written by the store
    if history:
        picked = {k: history.get(k) for k in ("metrics", "tags", "parent", "message")}
        summary.add_row(
            "from store",
            safe(
                f"{history.get('name')}@{history.get('version')} " + json_text(picked, indent=None)
            ),
        )
    if info.untrusted_types:
        names = list(map(str, info.untrusted_types))
        summary.add_row(
            safe("untrusted", "bold red"),
            line(
                safe(", ".join(names), "red"),
                "; after review, load with ",
                safe(f"amber.load(path, trusted={names!r})", "bold"),
            ),
        )
    if info.graph_error:
        summary.add_row(safe("invalid", "bold red"), safe(info.graph_error, "red"))
    summary.print()
    if depth:
        stdout.print(_render(tree), soft_wrap=False)  # long labels fold under their branch
    if not info.tensors:
        return
    table = Table(show_edge=False, header_style="bold")
    compressed = any(t.codec for t in info.tensors)
    columns = ("tensor", "dtype", "shape", "size") + (("stored", "codec") if compressed else ())
    for column in columns:
        table.add_column(column, justify="right" if column in ("size", "stored") else "left")
    rows = info.tensors if show_all else info.tensors[:_DEFAULT_ROWS]
    for t in rows:
        shape = "(" + ", ".join(map(str, t.shape)) + ("," if len(t.shape) == 1 else "") + ")"
        table.add_row(
            safe(t.name),
            safe(f"{t.dtype}{' F' if t.order == 'F' else ''}"),
            safe(shape),
            human_bytes(t.nbytes),
            *(_stored_cells(t) if compressed else ()),
        )
    stdout.print(table)
    if compressed:
        stdout.print("compressed tensors are decoded into memory when loaded (not memory-mapped)")
    if len(rows) < len(info.tensors):
        stdout.print(f"... {len(info.tensors) - len(rows)} more tensors (use --all)")


def _stored_cells(t: Any) -> tuple[Any, Any]:
    """The stored size and codec cells: "raw" (mmap-able), or the codec and its ratio."""
    if t.codec is None:
        return human_bytes(t.nbytes), safe("raw")
    ratio = t.nbytes / t.stored_nbytes if t.stored_nbytes else 0.0
    return human_bytes(t.stored_nbytes), safe(f"{t.codec} {ratio:.2f}x")


def _render(outline: Any) -> Tree:
    def label(item: Any) -> Text:
        text = safe(item.label)  # keys and names from the file
        if item.untrusted:
            text.stylize("bold red")
            text.append("  (untrusted)", style="red")
        if item.values or item.hidden_values:
            text.append("  ")
            text.append(safe(item.values_text(), "dim"))
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
