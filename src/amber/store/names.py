"""Model names, version specs (``churn``, ``churn@7``, ``churn@production``) and aliases."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from amber.errors import InvalidArgumentError

MAX_NAME = 128
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
LATEST = "latest"


def check_name(name: object, what: str = "model name") -> str:
    """A model or alias name: ASCII letters, digits, ``.``, ``_``, ``-``, starting with a
    letter or digit, at most 128 characters (they become storage keys on any backend)."""
    if not isinstance(name, str):
        raise InvalidArgumentError(f"{what} must be a string, got {type(name).__name__}")
    shown = name if len(name) <= 60 else name[:60] + "..."
    if not name:
        raise InvalidArgumentError(f"{what} is empty; use letters, digits, '.', '_' or '-'")
    if len(name) > MAX_NAME:
        raise InvalidArgumentError(
            f"{what} {shown!r} has {len(name)} characters; the limit is {MAX_NAME}"
        )
    if not _NAME.fullmatch(name) or ".." in name or name.endswith("."):
        raise InvalidArgumentError(
            f"invalid {what} {shown!r}: use ASCII letters, digits, '.', '_' and '-', "
            "starting with a letter or digit (no '/', '@', spaces, '..' or other characters)"
        )
    return name


def check_alias(alias: object) -> str:
    check_name(alias, "alias")
    assert isinstance(alias, str)
    if alias.isdigit():
        raise InvalidArgumentError(f"alias {alias!r} would read as a version number")
    if alias == LATEST:
        raise InvalidArgumentError("'latest' is maintained by the store and cannot be set")
    return alias


@dataclass(frozen=True)
class Spec:
    """A parsed ``name[@version|@alias]``; neither set means the latest version."""

    name: str
    version: int | None = None
    alias: str | None = None

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}@{self.version}"
        return f"{self.name}@{self.alias}" if self.alias else self.name


def parse_spec(text: object) -> Spec:
    if not isinstance(text, str):
        raise InvalidArgumentError(
            f"a model version is written 'name', 'name@7' or 'name@alias', got "
            f"{type(text).__name__}"
        )
    name, sep, ref = text.partition("@")
    if not name:
        raise InvalidArgumentError(f"{text[:60]!r} has no model name before '@'")
    check_name(name)
    if not sep:
        return Spec(name)
    if not ref:
        raise InvalidArgumentError(
            f"{text!r} ends with '@'; write {name!r} (latest), '{name}@7' or '{name}@production'"
        )
    if ref.isdigit() and ref.isascii():
        if ref.startswith("0"):
            raise InvalidArgumentError(
                f"version numbers start at 1, without leading zeros: {text!r}"
            )
        return Spec(name, version=int(ref))
    if ref.lstrip("-").isdigit():
        raise InvalidArgumentError(f"version numbers start at 1: {text!r}")
    if ref == LATEST:
        return Spec(name)
    check_name(ref, "alias")
    return Spec(name, alias=ref)


def closest(word: str, candidates: list[str], n: int = 3) -> list[str]:
    return difflib.get_close_matches(word, candidates, n=n, cutoff=0.5)
