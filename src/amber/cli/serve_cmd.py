"""`amber serve SPEC...`: serve stored models over HTTP (see docs/serving.md)."""

from __future__ import annotations

import typer

from amber.cli.store_common import (
    STORE_OPTION,
    is_remote,
    open_store,
    store_fail,
    store_location,
    store_root,
)
from amber.errors import AmberError, InvalidArgumentError


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)


def _batching(values: list[str]) -> dict[str, tuple[int, float]]:
    out = {}
    for text in values:
        name, _, rest = text.partition("=")
        size, _, wait = rest.partition(",")
        try:
            pair = (int(size), float(wait or 5))
        except ValueError:
            pair = (0, -1.0)
        if not name or pair[0] < 1 or not 0 <= pair[1] <= 10_000:
            store_fail(
                InvalidArgumentError(
                    f"--batch {text!r}: expected NAME=MAX_BATCH_SIZE[,MAX_WAIT_MS], e.g. iris=32,5"
                )
            )
        out[name] = pair
    return out


def serve(
    specs: list[str] = typer.Argument(
        ..., help="Models to serve: NAME[@VERSION|@ALIAS][:METHOD], e.g. churn@production."
    ),
    store: str | None = STORE_OPTION,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (loopback by default)."),
    port: int = typer.Option(8080, "--port", help="TCP port."),
    workers: int = typer.Option(1, "--workers", min=1, help="Worker processes (weights shared)."),
    poll: float = typer.Option(
        2.0, "--poll", min=0.0, help="Seconds between alias checks (0: never follow)."
    ),
    token: str | None = typer.Option(
        None,
        "--token",
        envvar="AMBER_SERVE_TOKEN",
        show_default=False,
        help="Require 'Authorization: Bearer TOKEN' (also $AMBER_SERVE_TOKEN).",
    ),
    batch: list[str] = typer.Option(
        [], "--batch", help="Adaptive batching for a model: NAME=MAX_BATCH_SIZE[,MAX_WAIT_MS]."
    ),
    max_body_mb: float = typer.Option(64.0, "--max-body-mb", min=0.001, help="Largest body."),
    body_timeout: float = typer.Option(
        30.0, "--body-timeout", min=0.1, help="Seconds a client has to send its body."
    ),
    access_log: bool = typer.Option(True, "--access-log/--no-access-log"),
    forest_evaluator: bool = typer.Option(
        True,
        "--forest-evaluator/--no-forest-evaluator",
        help="scikit-learn forests answer small requests through amber's bitwise-equal "
        "vectorized evaluator (~40x faster on one row); off: through their own methods.",
    ),
    log_level: str = typer.Option("info", "--log-level"),
) -> None:
    """Serve stored models: Open Inference Protocol v2 and MLflow-style /invocations.

    Aliases are followed: when churn@production moves, the new version is loaded, verified
    and warmed up in the background, then swapped in without dropping a request.
    """
    remote = is_remote(store_location(store))
    if not (remote and workers > 1):
        # A missing or foreign store is one clear line, exit 2. Not for an s3:// store
        # served by forked workers: its client must not exist before the fork (run()
        # checks the store in a separate process instead).
        open_store(store).close()
    from amber.serve import run

    try:
        run(
            specs,
            store=store_location(store) if remote else store_root(store),
            host=host,
            port=port,
            workers=workers,
            log_level=log_level,
            poll_interval=poll,
            token=token,
            max_body_bytes=int(max_body_mb * (1 << 20)),
            body_timeout=body_timeout,
            access_log=access_log,
            batching=_batching(batch),
            forest_evaluator=forest_evaluator,
        )
    except AmberError as exc:
        store_fail(exc)
