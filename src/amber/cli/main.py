"""Entry point: the typer app, one module per command group, errors as one line.

A command's module (and what it imports: rich tables, the store, the server) is imported
only when that command runs: ``amber inspect FILE`` registers ``inspect`` alone. Help,
completion and unknown commands register every command.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys

import typer

from amber._version import __version__
from amber.cli.output import sanitized_warnings

# Every command and command group, by the module that registers it (a test checks that
# this table lists exactly what the modules register).
COMMANDS: dict[str, str] = {
    "inspect": "inspect_cmd",
    "verify": "verify_cmd",
    "convert": "convert_cmd",
    "scan": "scan_cmd",
    **dict.fromkeys(
        ("ls", "versions", "search", "show", "diff", "alias", "tag", "rm"), "store_cmds"
    ),
    **dict.fromkeys(("export", "import", "gc", "check", "store"), "store_admin_cmds"),
    **dict.fromkeys(("push", "pull", "copy", "cache"), "remote_cmds"),
    "serve": "serve_cmd",
    "predict": "predict_cmd",
    "compress": "compress_cmd",
}
MODULES = tuple(dict.fromkeys(COMMANDS.values()))


def _version(value: bool) -> None:
    if value:
        typer.echo(f"amber {__version__}")
        raise typer.Exit()


def _root(
    ctx: typer.Context,
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """amber: safe, fast, verifiable model files."""
    # Warnings quote file and store text: one escaped line each while the command runs.
    ctx.with_resource(sanitized_warnings())


def build(modules: tuple[str, ...] = MODULES) -> typer.Typer:
    """The app with the commands of ``modules`` (``amber.cli.<module>``) registered."""
    app = typer.Typer(
        name="amber",
        help="Save ML models and load them back safely, fast, verifiably and with versions.",
        no_args_is_help=True,
        add_completion=True,  # --install-completion and --show-completion
        pretty_exceptions_enable=False,
        # Plain help and usage errors: typer's rich formatting imports rich's markdown,
        # pygments and traceback modules (~57 ms of every `amber --help` on this project's
        # machine, a third of the command), for boxes around the same text.
        rich_markup_mode=None,
    )
    app.callback()(_root)
    for module in modules:
        importlib.import_module(f"amber.cli.{module}").register(app)
    return app


def modules_for(argv: list[str]) -> tuple[str, ...]:
    """The command modules a command line needs: the one of its command, or all (help, no
    command, an option before the command, an unknown name, shell completion)."""
    if any(key.endswith("_COMPLETE") for key in os.environ):
        return MODULES
    if len(argv) > 1 and argv[1] in COMMANDS:
        return (COMMANDS[argv[1]],)
    return MODULES


@functools.cache
def _whole_app() -> typer.Typer:
    return build()


def __getattr__(name: str) -> typer.Typer:
    # ``amber.cli.main.app``: the whole app, built on first use (tests, documentation tools).
    if name == "app":
        return _whole_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main() -> None:
    """Console script: run the app; amber errors become one line on stderr."""
    sys.exit(build(modules_for(sys.argv))(standalone_mode=True))


if __name__ == "__main__":
    main()
