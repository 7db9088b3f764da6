"""`amber scan FILE...`: judge pickle, joblib, torch.save and numpy files without running them."""

from __future__ import annotations

from pathlib import Path

import typer

from amber.cli.output import echo_json, line, safe, stdout

_STYLE = {"SAFE TO CONVERT": "green", "NEEDS TRUST": "yellow", "REFUSED": "red"}


def register(app: typer.Typer) -> None:
    app.command("scan")(scan)


def scan(
    files: list[Path] = typer.Argument(..., help="pickle, joblib, torch.save or numpy files."),
    trusted: list[str] = typer.Option(
        [], "--trusted", help="A class or function you reviewed (dotted name); repeatable."
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print one JSON report per file, as a list."
    ),
) -> None:
    """List every class and function FILES would import, judged against amber's allowlist,
    and say SAFE TO CONVERT, NEEDS TRUST or REFUSED. Nothing in the files is run.

    Exit 0 when every file is SAFE TO CONVERT, 1 when some NEEDS TRUST (none refused), 2 when
    any file is REFUSED (malformed, truncated, or builds what amber never constructs).
    """
    from amber.legacy.scan import scan_file

    reports = [scan_file(path, trusted=trusted) for path in files]
    if as_json:
        echo_json([r.to_dict() for r in reports])
    else:
        for report in reports:
            stdout.print(
                line(
                    safe(report.verdict, _STYLE[report.verdict]),
                    f" {report.path}",
                    f" ({report.format})" if report.format else "",
                )
            )
            for check in report.names:
                mark = "trusted" if check.trusted else ("never" if check.never else "untrusted")
                stdout.print(line(f"  {check.kind} {check.name}: ", safe(mark)))
            stdout.print(line("  ", safe(report.reason)))
    raise typer.Exit(max(r.exit_code for r in reports))
