"""Entry point: the typer app, one module per command group, errors as one line."""

from __future__ import annotations

import sys

import typer

from amber._version import __version__
from amber.cli import (
    compress_cmd,
    convert_cmd,
    inspect_cmd,
    predict_cmd,
    scan_cmd,
    serve_cmd,
    store_admin_cmds,
    store_cmds,
    verify_cmd,
)
from amber.cli.output import sanitized_warnings
from amber.cli.remote_cmds import register as register_remote

app = typer.Typer(
    name="amber",
    help="Save ML models and load them back safely, fast, verifiably and with versions.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion and --show-completion
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"amber {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """amber: safe, fast, verifiable model files."""
    # Warnings quote file and store text: one escaped line each while the command runs.
    ctx.with_resource(sanitized_warnings())


inspect_cmd.register(app)
verify_cmd.register(app)
convert_cmd.register(app)
scan_cmd.register(app)
store_cmds.register(app)
store_admin_cmds.register(app)
register_remote(app)
serve_cmd.register(app)
predict_cmd.register(app)
compress_cmd.register(app)


def main() -> None:
    """Console script: run the app; amber errors become one line on stderr."""
    sys.exit(app(standalone_mode=True))


if __name__ == "__main__":
    main()
