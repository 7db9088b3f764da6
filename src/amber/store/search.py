"""Translating ``Store.search`` conditions into one SQL query over the index."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

from amber.errors import InvalidArgumentError

_CONDITION = re.compile(r"^\s*([A-Za-z0-9_.:/-]+)\s*(<=|>=|==|=|<|>)\s*(\S+)\s*$")
SELECT = (
    "SELECT v.name, v.version, v.created_at, v.creator, v.message, v.parent, v.size, "
    "v.content_digest, v.metadata, v.metrics, v.tags FROM versions v"
)


def _when(value: str | datetime, label: str) -> str:
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value))
        except ValueError:
            raise InvalidArgumentError(
                f"{label} must be an ISO date like 2026-01-31 or a datetime, got {value!r}"
            ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds")


def build_query(
    name: str | None,
    tags: Mapping[str, str] | None,
    metrics: Iterable[str] | None,
    after: str | datetime | None,
    before: str | datetime | None,
) -> tuple[str, list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    if name is not None:
        if not isinstance(name, str) or not name:
            raise InvalidArgumentError("name must be a non-empty string")
        if name.endswith("*"):
            where.append("v.name LIKE ? ESCAPE '\\'")
            escaped = name[:-1].replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            params.append(escaped + "%")
        else:
            where.append("v.name = ?")
            params.append(name)
    for key, value in (tags or {}).items():
        where.append("json_extract(v.tags, ?) = ?")
        params += [f'$."{key}"', value]
    if isinstance(metrics, str):
        metrics = [metrics]
    for condition in metrics or ():
        match = _CONDITION.match(condition) if isinstance(condition, str) else None
        if match is None:
            raise InvalidArgumentError(
                f"metric condition {condition!r} must look like 'accuracy>=0.9'"
            )
        key, op, text = match.groups()
        try:
            value = float(text)
        except ValueError:
            raise InvalidArgumentError(f"{condition!r}: {text!r} is not a number") from None
        op = "=" if op == "==" else op
        where.append(
            f"EXISTS (SELECT 1 FROM metrics m WHERE m.name = v.name AND m.version = v.version "
            f"AND m.key = ? AND m.value {op} ?)"
        )
        params += [key, value]
    if after is not None:
        where.append("v.created_at >= ?")
        params.append(_when(after, "after"))
    if before is not None:
        where.append("v.created_at < ?")
        params.append(_when(before, "before"))
    sql = SELECT + (" WHERE " + " AND ".join(where) if where else "")
    return sql + " ORDER BY v.name, v.version", params
