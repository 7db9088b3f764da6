"""Store commands that move data and keep a store healthy: `amber export`, `import`,
`gc`, `check`, and the `amber store` group (`reindex`, `path`).

Exit codes: 0 on success, 1 when the operation failed (problems found by `check`, an
existing output file, a damaged input, a write error), 2 for bad input or something that
does not exist (a malformed spec, no store, an unknown version, a file that is not amber).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer

from amber.cli.output import (
    EXIT_FAILED,
    echo_json,
    human_bytes,
    json_text,
    line,
    plural,
    safe,
    stderr,
    stdout,
)
from amber.cli.store_common import (
    JSON_OPTION,
    STORE_OPTION,
    is_remote,
    model_name,
    opened,
    plain,
    progress,
    store_fail,
    store_location,
    store_root,
)
from amber.errors import AmberError, InvalidArgumentError, WriteError

store_app = typer.Typer(
    name="store",
    help="Manage the store itself: rebuild its index, print its location.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.command("export")(export)
    app.command("import")(import_)
    app.command("gc")(gc)
    app.command("check")(check)
    store_app.command("reindex")(reindex)
    store_app.command("path")(path)
    app.add_typer(store_app)


# -- transfer -----------------------------------------------------------------------------


def export(
    spec: str = typer.Argument(
        ..., metavar="SPEC", help="A version (NAME, NAME@7, NAME@ALIAS); with --all, NAME."
    ),
    file: Path = typer.Argument(..., metavar="FILE", help="The .amber file to write."),
    every: bool = typer.Option(
        False, "--all", help="Write every version of NAME (and its aliases) into one bundle."
    ),
    force: bool = typer.Option(False, "--force", help="Replace FILE if it exists."),
    store: str = STORE_OPTION,
) -> None:
    """Write a version as a standalone .amber file (`amber.load` reads it; it keeps the
    version's metrics, tags and lineage), or with --all a bundle of a model's whole history
    for `amber import`.

    Exit 0 on success, 1 when FILE exists (without --force) or cannot be written, 2 when the
    spec is malformed or the version does not exist.
    """
    if file.exists() and not force:
        store_fail(WriteError(f"{file} exists; pass --force to replace it"), EXIT_FAILED)
    with opened(store) as s:
        if every:
            name = model_name(spec)
            found = s.versions(name)
            total = sum(v.size for v in found)
            with progress(f"exporting {len(found)} versions of {name}", total):
                s.export_all(name, file)
            what = f"{len(found)} versions of {name}"
        else:
            version = s.get(spec)
            total = version.size
            with progress(f"exporting {version.spec}", total):
                s.export(version.spec, file)
            what = version.spec
    stdout.print(
        line(
            safe("ok", "green"),
            f" exported {what} -> {file} ({human_bytes(file.stat().st_size)})",
        )
    )


def _manifest(file: Path) -> dict[str, Any]:
    """FILE's manifest (one read, no digest checked: the import checks everything)."""
    from amber.container.reader import ContainerReader

    with ContainerReader(file, verify="off", use_mmap=False) as reader:
        return reader.manifest


def import_(
    file: Path = typer.Argument(..., metavar="FILE", help="An exported .amber file or a bundle."),
    name: str = typer.Option(
        None,
        "--name",
        help="Import under this model name (default: the name it was exported under).",
    ),
    bundle: bool = typer.Option(
        False, "--bundle", help="Require FILE to be a bundle (bundles are detected anyway)."
    ),
    store: str = STORE_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Bring an exported version (or every version of a bundle, lineage and aliases kept)
    into the store as new versions. Creates the store if it does not exist. Any .amber file
    holding a model can be imported with --name.

    Exit 0 on success, 1 when FILE is damaged or the write failed, 2 when FILE is missing
    or not an amber file, or the name is malformed or missing.
    """
    from amber.store.transfer import BUNDLE_KEY

    if name is not None:
        name = model_name(name)
    root = store_root(store)
    created = not is_remote(store_location(store)) and not root.exists()
    try:
        manifest = _manifest(file)
    except AmberError as exc:
        store_fail(exc)
    is_bundle = BUNDLE_KEY in manifest  # a bundle: an .amber container with this key
    if bundle and not is_bundle:
        store_fail(InvalidArgumentError(f"{file} is not an amber bundle (amber export --all)"))
    if name is None and not is_bundle and not isinstance(manifest.get("store"), dict):
        store_fail(
            InvalidArgumentError(f"{file} was not exported from a store; give a model name: --name")
        )
    total = file.stat().st_size
    with opened(store, create=True) as s:
        with progress(f"importing {file.name}", total):
            versions = (
                s.import_bundle(file, name=name) if is_bundle else [s.import_file(file, name=name)]
            )
        if created:
            stderr.print(plain(f"created a new store at {root}"))
    if as_json:
        echo_json([v.to_dict() for v in versions])
        return
    specs = ", ".join(v.spec for v in versions)
    stdout.print(plain(f"imported {len(versions)} version{'s' * (len(versions) != 1)}: {specs}"))


# -- maintenance --------------------------------------------------------------------------


def gc(
    grace: float = typer.Option(
        3600.0,
        "--grace",
        min=0,
        metavar="SECONDS",
        help="Keep unreferenced data younger than this.",
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Report what would be removed."),
    store: str = STORE_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Remove data that no version uses any more (after `amber rm`), and temporary files
    of writers that died, once older than the grace period.

    Exit 0 on success, 1 when the store could not be cleaned, 2 when there is no store.
    """
    with opened(store) as s:
        report = s.gc(grace=grace, dry_run=dry_run)
    if as_json:
        typer.echo(json_text(report.__dict__, indent=None))
        return
    verb = "would free" if dry_run else "freed"
    stdout.print(
        line(
            f"{verb} {human_bytes(report.bytes_freed)}: "
            f"{plural(report.objects_removed, 'object')} and "
            f"{plural(report.temporaries_removed, 'temporary file')}; kept "
            f"{plural(report.objects_kept, 'object')} that versions use"
        )
    )
    if report.objects_young:
        stdout.print(
            line(
                f"also kept {plural(report.objects_young, 'unused object')} "
                f"({human_bytes(report.bytes_young)}) younger than the grace period "
                f"({_duration(grace)}): a save still running may be about to use them; a "
                "later gc frees them (--grace 0 frees them now, safe only while nothing "
                "saves into this store)"
            )
        )


def _duration(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return plural(int(seconds // 3600), "hour")
    if seconds >= 60 and seconds % 60 == 0:
        return plural(int(seconds // 60), "minute")
    return f"{seconds:g} s"


def check(
    repair: bool = typer.Option(False, "--repair", help="Rebuild the index if it drifted."),
    store: str = STORE_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Re-hash every object, validate every version record and compare the index with
    storage.

    Exit 0 when the store is sound (or only its index drifted and --repair fixed it), 1 when
    problems were found, 2 when there is no store.
    """
    from amber.store.maintenance import describe_json

    start = time.perf_counter()
    with opened(store) as s:
        report = s.check(repair=repair)
    if as_json:
        typer.echo(describe_json(report))  # ensure_ascii: every non-ASCII character escaped
    else:
        head, *rest = str(report).splitlines()
        color = "green" if report.ok else "red"
        stdout.print(line(safe(head, color), f" in {time.perf_counter() - start:.1f} s"))
        for text in rest:
            stdout.print(plain("  " + text))
        if not report.ok and report.index_drift and not report.repaired:
            stdout.print("the index can be rebuilt with `amber check --repair`")
    if not report.ok:
        raise typer.Exit(EXIT_FAILED)


def reindex(store: str = STORE_OPTION) -> None:
    """Rebuild the store's index (a cache for listings and searches) from its storage.

    Exit 0 on success, 1 when it failed, 2 when there is no store.
    """
    with opened(store) as s:
        count = s.reindex()
    stdout.print(line(f"indexed {count} versions"))


def path(store: str = STORE_OPTION, as_json: bool = JSON_OPTION) -> None:
    """Print the store folder (or URL) that --store / AMBER_STORE / the default choose.

    Exit 0 (a note on stderr says when no store exists there yet).
    """
    location = store_location(store)
    if is_remote(location):
        shown, exists = str(location), None
    else:
        root = store_root(store).absolute()
        shown, exists = str(root), root.exists()
    if as_json:
        echo_json({"store": shown, "remote": exists is None, "exists": exists})
        return
    typer.echo(shown)
    if exists is False:
        stderr.print(plain(f"(no store at {shown} yet)"))
