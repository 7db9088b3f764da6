"""Judge a pickle, joblib, torch.save or numpy file without running anything in it.

The verdict is one of three, never "no issues found" on an error:

* SAFE TO CONVERT: every class and function it names is trusted, and amber rebuilt the
  object with its typed-state checks (what ``amber convert`` will write);
* NEEDS TRUST: it names classes amber does not trust by default (listed, as ``amber load``
  would list them); ``--trusted NAME`` or ``trusted=[...]`` after review;
* REFUSED: malformed or truncated, or it builds something amber never constructs (a call
  of a function, an object of a process/file/import module, an unsupported form).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from amber.errors import AmberError, UntrustedTypeError
from amber.legacy import formats
from amber.legacy.joblib_file import DEFAULT_MAX_OUTPUT
from amber.legacy.policy import never_constructed
from amber.legacy.reader import build, parse
from amber.legacy.translate import Refused

SAFE = "SAFE TO CONVERT"
NEEDS_TRUST = "NEEDS TRUST"
REFUSED = "REFUSED"
EXIT_CODES = {SAFE: 0, NEEDS_TRUST: 1, REFUSED: 2}


@dataclass
class NameCheck:
    """One class or function the file would import."""

    name: str
    kind: str
    trusted: bool
    never: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "trusted": self.trusted, "never": self.never}


@dataclass
class ScanReport:
    """What ``scan`` found in one file."""

    path: Path
    verdict: str
    reason: str
    format: str | None = None
    names: list[NameCheck] = field(default_factory=list)

    @property
    def untrusted(self) -> list[str]:
        return sorted({n.name for n in self.names if not n.trusted})

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict]

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "format": self.format,
            "verdict": self.verdict,
            "reason": self.reason,
            "names": [n.to_dict() for n in self.names],
            "untrusted": self.untrusted,
        }


def _judge_names(root: Any, trusted: frozenset[str]) -> tuple[list[NameCheck], list[str]]:
    from amber.graph.decode import scan as scan_nodes
    from amber.graph.trust import REGISTRY

    found = scan_nodes(root)
    checks: dict[tuple[str, str], NameCheck] = {}
    for kind, name in found.names:
        dotted = name.dotted
        never = never_constructed(dotted) and not REGISTRY.allows(name, kind)
        ok = not never and REGISTRY.allows(name, kind, trusted)
        checks.setdefault((kind, dotted), NameCheck(dotted, kind, ok, never))
    return sorted(checks.values(), key=lambda c: (c.name, c.kind)), found.problems


def scan_file(
    path: os.PathLike[str] | str,
    *,
    trusted: Iterable[Any] | None = None,
    max_output: int = DEFAULT_MAX_OUTPUT,
) -> ScanReport:
    """Judge the file at ``path`` (see the module docstring); imports only what trusted
    names need, and only once every name passed."""
    import amber.api  # noqa: F401  (the adapters' allowlists and schemas)
    from amber.graph.trust import trusted_set

    path = Path(path)
    user = trusted_set(trusted)
    fmt = formats.detect(path, formats.read_head(path))
    try:
        parsed = parse(path, max_output=max_output, trusted=user)
    except Refused as exc:
        names = [NameCheck(n, "function", False, True) for n in exc.names]
        return ScanReport(path, REFUSED, str(exc), fmt, names)
    except AmberError as exc:
        return ScanReport(path, REFUSED, str(exc), fmt)
    except RecursionError:
        return ScanReport(path, REFUSED, "the file nests objects too deeply to read", fmt)
    except Exception as exc:  # fail closed: what cannot be read fully is never judged safe
        reason = f"amber could not read it fully ({type(exc).__name__}: {exc})"
        return ScanReport(path, REFUSED, reason, fmt)
    report = ScanReport(path, REFUSED, "", parsed.format)
    try:
        report.names, problems = _judge_names(parsed.root, user)
    except AmberError as exc:
        report.reason = str(exc)
        return report
    never = sorted({n.name for n in report.names if n.never})
    if never:
        report.reason = (
            f"it would import {', '.join(never)}, which amber never constructs (code "
            "execution, processes, files or imports)"
        )
        return report
    if report.untrusted:
        report.verdict = NEEDS_TRUST
        report.reason = (
            f"it names untrusted {'classes' if len(report.untrusted) > 1 else 'class'} "
            f"{', '.join(report.untrusted)}; if you wrote or reviewed that code, convert with "
            + " ".join(f"--trusted {n}" for n in report.untrusted)
        )
        return report
    if problems:
        report.reason = problems[0]
        return report
    try:
        build(parsed, user)
    except UntrustedTypeError as exc:
        report.reason = str(exc)
        return report
    except AmberError as exc:
        report.reason = f"amber's checks refused what it builds: {exc}"
        return report
    except RecursionError:
        report.reason = "the file nests objects too deeply to rebuild"
        return report
    except Exception as exc:  # a trusted class refused its state in its own way
        report.reason = f"amber could not rebuild it ({type(exc).__name__}: {exc})"
        return report
    report.verdict = SAFE
    report.reason = "every name is trusted and the object passed amber's typed-state checks"
    return report
