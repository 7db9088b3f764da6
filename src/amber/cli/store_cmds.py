"""Store commands that list, show and edit versions: `amber ls`, `versions`, `show`,
`diff`, `alias`, `tag` and `rm`.

Exit codes (every command): 0 on success, 1 when the operation failed (an alias conflict,
a refused delete, a damaged store), 2 for bad input or something that does not exist (a
malformed spec, no store, an unknown model, version or alias).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from amber.cli.listing import Column, print_listing
from amber.cli.output import (
    EXIT_FAILED,
    Summary,
    echo_json,
    human_bytes,
    json_text,
    line,
    safe,
    stdout,
)
from amber.cli.store_common import (
    JSON_OPTION,
    STORE_OPTION,
    model_name,
    number,
    opened,
    pairs,
    plain,
    store_fail,
    when,
)
from amber.errors import InvalidArgumentError, StoreError

if TYPE_CHECKING:
    from amber.store.store import Store

SPEC_HELP = "A version: NAME (latest), NAME@7 or NAME@ALIAS."


def register(app: typer.Typer) -> None:
    app.command("ls")(ls)
    app.command("versions")(versions)
    app.command("search")(search)
    app.command("show")(show)
    app.command("diff")(diff)
    app.command("alias")(alias)
    app.command("tag")(tag)
    app.command("rm")(rm)


def _table(*columns: str, right: tuple[str, ...] = (), wrap: tuple[str, ...] = ()) -> Any:
    """A rich table; only the ``wrap`` columns may wrap (measuring is cheaper without).
    Headers may be version specs read from the store: escaped like every cell."""
    from rich.table import Table

    table = Table(show_edge=False, header_style="bold")
    for column in columns:
        table.add_column(
            safe(column), justify="right" if column in right else "left", no_wrap=column not in wrap
        )
    return table


# -- listing ------------------------------------------------------------------------------


def ls(store: str = STORE_OPTION, as_json: bool = JSON_OPTION) -> None:
    """List the models of the store: latest version, number of versions, aliases, total
    size and last update (from the index, without reading any model).

    Exit 0 on success, 2 when there is no store at the chosen path.
    """
    with opened(store) as s:
        models = s.models()
    if as_json:
        echo_json([m.to_dict() for m in models])
        return
    if not models:
        stdout.print(line(f"no models in {s.backend.describe()}"))
        return
    print_listing(
        (
            Column("model"),
            Column("latest", right=True),
            Column("versions", priority=2, right=True),
            Column("aliases", fold=True),
            Column("size", priority=1, right=True),
            Column("updated (UTC)", priority=3),
        ),
        [
            (
                m.name,
                m.latest,
                m.versions,
                [f"{a}@{v}" for a, v in sorted(m.aliases.items())],
                human_bytes(m.size),
                when(m.updated_at),
            )
            for m in models
        ],
    )


def versions(
    name: str = typer.Argument(..., metavar="NAME", help="The model name."),
    store: str = STORE_OPTION,
    as_json: bool = JSON_OPTION,
    last: int = typer.Option(0, "--last", min=0, help="Show only the N newest versions."),
) -> None:
    """The history of a model, oldest first: version, creation time and creator, metrics,
    tags, aliases, parent (lineage) and message.

    Exit 0 on success, 2 when the name is malformed or the store or model does not exist.
    """
    name = model_name(name)
    with opened(store) as s:
        found = s.versions(name)
    if last:
        found = found[-last:]
    _print_versions(found, as_json, first="version")


def _print_versions(found: list[Any], as_json: bool, *, first: str) -> None:
    """Versions as JSON or as a table whose first column is the ``version`` number or the
    whole ``spec`` (name@N)."""
    if as_json:
        echo_json([v.to_dict() for v in found])
        return
    print_listing(
        (
            Column(first, right=first == "version"),
            Column("created (UTC)", priority=3),
            Column("creator", priority=5),
            Column("metrics", fold=True, min_width=36),
            Column("tags", priority=2, fold=True),
            Column("aliases"),
            Column("parent", priority=4),
            Column("message", priority=1, fold=True),
        ),
        [
            (
                v.version if first == "version" else v.spec,
                when(v.created_at),
                v.creator,
                v.metrics,
                v.tags,
                list(v.aliases),
                v.parent or "",
                v.message or "",
            )
            for v in found
        ],
    )


def search(
    name: str = typer.Argument(
        None, metavar="[NAME]", help="A model name, or a prefix ending in * (quote it)."
    ),
    tags: list[str] = typer.Option(
        [], "--tag", metavar="KEY=VALUE", help="A tag every result has (repeat for more)."
    ),
    metrics: list[str] = typer.Option(
        [], "--metric", metavar="CONDITION", help="Like 'accuracy>=0.9' (repeat for more)."
    ),
    after: str = typer.Option(None, "--after", help="Created at or after (ISO date/time)."),
    before: str = typer.Option(None, "--before", help="Created before (ISO date/time)."),
    store: str = STORE_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Versions of every model (or of NAME) matching all the conditions given.

    Exit 0 on success (also when nothing matches), 2 when a condition is malformed or the
    store does not exist.
    """
    wanted = _tag_pairs(tags or [])
    with opened(store) as s:
        found = s.search(name, tags=wanted, metrics=metrics or None, after=after, before=before)
        if not found and (metrics or wanted):
            _unknown_names(s.search(name), metrics or [], wanted)
    _print_versions(found, as_json, first="spec")


def _unknown_names(versions: list[Any], conditions: list[str], tags: dict[str, str]) -> None:
    """When nothing matched, a metric or tag key that no version has is most likely a typo:
    say so, with the names that exist."""
    import re

    known_metrics = sorted({k for v in versions for k in v.metrics})
    known_tags = sorted({k for v in versions for k in v.tags})
    for condition in conditions:
        metric = re.split(r"[<>=!]", condition, maxsplit=1)[0].strip()
        if metric and metric not in known_metrics:
            store_fail(
                InvalidArgumentError(
                    f"no version has a metric named {metric!r}; known metrics: "
                    f"{', '.join(known_metrics) or 'none'}"
                )
            )
    for key in tags:
        if key not in known_tags:
            store_fail(
                InvalidArgumentError(
                    f"no version has a tag named {key!r}; known tags: "
                    f"{', '.join(known_tags) or 'none'}"
                )
            )


def show(
    spec: str = typer.Argument(..., metavar="SPEC", help=SPEC_HELP),
    store: str = STORE_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Everything the store knows about one version, without loading it: metadata,
    metrics, tags, aliases, lineage, signature, environment, and its tensors' count and
    size.

    Exit 0 on success, 2 when the spec is malformed or the store, model, version or alias
    does not exist; 1 when the version's record is damaged.
    """
    with opened(store) as s:
        version = s.get(spec)
        record = s.resolve(version.spec)
    tensor_count = len(record.tensors)
    tensor_bytes = sum(t.entry.nbytes for t in record.tensors)
    if as_json:
        echo_json({**version.to_dict(), "tensor_count": tensor_count, "tensor_bytes": tensor_bytes})
        return
    summary = Summary()
    rows: list[tuple[str, object]] = [
        ("version", version.spec),
        ("created", f"{when(version.created_at)} UTC by {version.creator}"),
        ("aliases", ", ".join(version.aliases)),
        ("parent", version.parent or ""),
        ("message", version.message or ""),
        ("metrics", pairs(version.metrics)),
        ("tags", pairs(version.tags)),
        ("tensors", f"{tensor_count} ({human_bytes(tensor_bytes)})"),
        ("content", version.content_digest),
    ]
    if version.metadata:
        rows.append(("metadata", json_text(version.metadata, indent=None)))
    if version.signature:
        rows.append(("signature", json_text(version.signature, indent=None)))
    env = version.environment
    if env:
        packages = ", ".join(f"{k} {v}" for k, v in (env.get("packages") or {}).items())
        rows.append(
            ("environment", f"python {env.get('python')} {env.get('platform')}; {packages}")
        )
    for label, value in rows:
        if value in ("", None):
            continue
        if label == "content":  # a digest is copied whole: one line, never folded
            summary.add_line(label, plain(value))
        else:
            summary.add_row(label, plain(value))
    summary.print()


def diff(
    a: str = typer.Argument(..., metavar="A", help="The old version: NAME, NAME@7 or NAME@ALIAS."),
    b: str = typer.Argument(..., metavar="B", help="The new version."),
    store: str = STORE_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """What changed from version A to B: metrics, hyperparameters, metadata, environment,
    signature and tensors (with the largest absolute difference of changed ones).

    Exit 0 on success (whether or not they differ), 2 when a spec is malformed or a version
    does not exist.
    """
    with opened(store) as s:
        result = s.diff(a, b)
    if as_json:
        echo_json(result.to_dict())
        return
    same = safe("  (same content)", "green") if result.same_content else ""
    stdout.print(line(safe(f"{result.a} -> {result.b}", "bold"), same))
    sections = [
        ("metrics", result.metrics),
        ("params", result.params),
        ("metadata", result.metadata),
        ("environment", result.environment),
    ]
    for title, changes in sections:
        if not changes:
            continue
        table = _table(title, result.a, result.b, wrap=(result.a, result.b))
        for key, (old, new) in changes.items():
            table.add_row(plain(key), plain(_shown(old)), plain(_shown(new)))
        stdout.print(table)
    if result.signature_notes:
        state = safe("compatible") if result.signature_compatible else safe("INCOMPATIBLE", "red")
        stdout.print(line("signature (", state, "):"))
        for note in result.signature_notes:
            stdout.print(plain("  " + note))
    if result.tensors:
        table = _table(
            "tensor",
            "change",
            "size",
            "max |diff|",
            "note",
            right=("size", "max |diff|"),
            wrap=("tensor", "note"),
        )
        for t in result.tensors:
            delta = "" if t.max_abs_diff is None else f"{t.max_abs_diff:.6g}"
            table.add_row(
                plain(t.name), plain(t.change), human_bytes(t.nbytes), delta, plain(t.note)
            )
        stdout.print(table)
    elif not result.same_content:
        stdout.print("tensors: no change")
    for note in result.notes:
        stdout.print(plain("note: " + note))


def _shown(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return number(value)
    return value if isinstance(value, str) else repr(value)


# -- editing ------------------------------------------------------------------------------


def _expected(text: str | None) -> dict[str, int | None]:
    """``--expect`` as keyword arguments of ``Store.set_alias``."""
    if text is None:
        return {}
    if text.lower() == "none":
        return {"expected": None}
    if text.isdigit() and text.isascii() and not text.startswith("0"):
        return {"expected": int(text)}
    store_fail(InvalidArgumentError(f"--expect takes a version number or 'none', got {text!r}"))
    return {}  # unreachable: store_fail exits


def alias(
    spec: str = typer.Argument(
        ..., metavar="SPEC", help=SPEC_HELP + " With --remove: the model name."
    ),
    name: str = typer.Argument(..., metavar="ALIAS", help="The alias, like 'production'."),
    force: bool = typer.Option(
        False, "--force", help="Move the alias even if it moved meanwhile or --expect fails."
    ),
    expect: str = typer.Option(
        None,
        "--expect",
        metavar="N",
        help="Only move the alias if it points to version N now ('none': if it is unset).",
    ),
    remove: bool = typer.Option(False, "--remove", help="Remove the alias instead."),
    store: str = STORE_OPTION,
) -> None:
    """Point ALIAS at a version (a compare-and-swap: a concurrent move is an error, not
    silently overwritten), or remove it with --remove.

    Exit 0 on success, 1 on a conflict (the alias moved, or --expect does not hold), 2 when
    a spec or alias is malformed or the model, version or alias does not exist.
    """
    expected = _expected(expect)
    with opened(store) as s:
        if remove:
            model = model_name(spec)
            s.remove_alias(model, name)
            stdout.print(line(f"removed alias {model}@{name}"))
            return
        before = _current_alias(s, spec, name)
        version = s.set_alias(spec, name, force=force, **expected)
    was = "" if before in (None, version.version) else f" (was {before})"
    stdout.print(line(f"{version.name}@{name} -> {version.version}{was}"))


def _current_alias(s: Store, spec: str, name: str) -> int | None:
    """Where ALIAS points now (to say what an alias move replaced)."""
    from amber.store.names import check_alias, parse_spec

    check_alias(name)
    return s.aliases(parse_spec(spec).name).get(name)


def _tag_pairs(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            store_fail(InvalidArgumentError(f"tags are written key=value, got {item!r}"))
        out[key] = value
    return out


def tag(
    spec: str = typer.Argument(..., metavar="SPEC", help=SPEC_HELP),
    items: list[str] = typer.Argument(None, metavar="KEY=VALUE...", help="Tags to set."),
    remove: list[str] = typer.Option(
        [], "--remove", metavar="KEY", help="A tag to remove (repeat for more)."
    ),
    store: str = STORE_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Set (or with --remove, drop) editable tags of a version; prints its tags.

    Exit 0 on success, 1 when the tags kept changing concurrently, 2 for a malformed spec
    or tag, or when the version does not exist.
    """
    changes = _tag_pairs(items or [])
    if not changes and not remove:
        store_fail(InvalidArgumentError("give tags as key=value, or --remove KEY"))
    with opened(store) as s:
        version = s.set_tags(spec, changes, remove=remove)
    if as_json:
        echo_json(version.to_dict())
        return
    stdout.print(plain(f"{version.spec}: {pairs(version.tags) or 'no tags'}"))


def rm(
    spec: str = typer.Argument(..., metavar="SPEC", help="One version: NAME@7."),
    force: bool = typer.Option(
        False, "--force", help="Delete even if aliased (the aliases are removed)."
    ),
    store: str = STORE_OPTION,
) -> None:
    """Delete a version (its number is never reused). Its data is freed by `amber gc` once
    no other version uses it.

    Exit 0 on success, 1 when an alias points to it (move the alias or pass --force), 2 when
    the spec is not NAME@N or the version does not exist.
    """
    from amber.store.names import parse_spec

    with opened(store) as s:
        parsed = parse_spec(spec)
        if parsed.version is None:
            raise InvalidArgumentError(f"rm takes one version number, like '{parsed.name}@3'")
        aliases = s.get(spec).aliases
        if aliases and not force:
            store_fail(
                StoreError(
                    f"{spec} is aliased as {', '.join(aliases)}; move the alias first "
                    "(amber alias) or pass --force"
                ),
                EXIT_FAILED,
            )
        s.delete(spec, force=force)
    dropped = f" and its aliases {', '.join(aliases)}" if aliases else ""
    stdout.print(
        line(
            f"deleted {spec}{dropped}; its data that no other version uses is freed by "
            "`amber gc` once older than the grace period (1 hour by default)"
        )
    )
