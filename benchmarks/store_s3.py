"""``python -m benchmarks.store_s3``: the store on S3, against the raw clients, in one run.

Everything runs against a moto S3 server started here on loopback (so the figures measure
client overheads and protocol round trips, not a network). Each figure is a median over
``--repeat`` runs, and each ratio compares against a peer measured in the same run:

1. Push (local store -> S3) and pull (S3 -> a new local store) of a ``--mb`` model, against
   moving the same bytes with obstore (``put``/``get`` of one blob, and the get followed by
   an fsync: a pull makes its objects durable) and with boto3
   (``upload_file``/``download_file``, and the download followed by an fsync; boto3 comes
   with moto, reported missing if absent).
2. Cold ``Store("s3://...").load`` (empty cache) against a raw download of the model's
   .amber file plus ``amber.load`` of it; warm load (cached) against a local-store load.
3. A second version changing 5% of the tensors: bytes uploaded against one full version.
4. ``Store(url).models()`` (what ``amber ls`` runs) on a store of ``--versions`` versions:
   the first sync of a fresh client, then a warm open (index in sync: one LIST of the
   change journal), and the ``amber ls`` command itself (a new process each time).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

import amber
from amber.store import Store

TENSOR_MB = 16
ACCESS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench-secret"}


def median_s(action: Callable[[], Any], repeat: int, before: Callable[[], Any] = lambda: None):
    times = []
    for _ in range(repeat):
        before()
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def model(mb: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = max(1, mb // TENSOR_MB)
    per = (mb << 20) // n // 4
    return {f"layer{i}.weight": rng.standard_normal(per, dtype=np.float32) for i in range(n)}


class Server:
    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.server.start()
        host, port = self.server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        self.count = 0

    def bucket(self) -> str:
        self.count += 1
        name = f"bench-{self.count}"
        request = urllib.request.Request(f"{self.endpoint}/{name}", method="PUT")
        urllib.request.urlopen(request, timeout=10).close()
        return name

    def obstore(self, bucket: str) -> Any:
        from obstore.store import S3Store

        return S3Store(
            bucket,
            endpoint=self.endpoint,
            access_key_id=ACCESS["AWS_ACCESS_KEY_ID"],
            secret_access_key=ACCESS["AWS_SECRET_ACCESS_KEY"],
            region="us-east-1",
            client_options={"allow_http": True},
        )


def fill(server: Server, bucket: str, prefix: str, url: str, versions: int) -> None:
    """A store of ``versions`` versions of 100 models: each model's first version saved
    by amber, the others written as the same version records (one PUT each, 16 at once,
    as many writers would) without uploading the same tiny object again; then one save
    through amber, so the store's change journal is as writers leave it."""
    from amber.store import records

    with Store(url) as store:
        firsts = [store.save({"x": np.zeros(4)}, f"model{i}") for i in range(min(100, versions))]
        bodies = {v.name: dict(store.resolve(v.spec).raw) for v in firsts}
    raw = server.obstore(bucket)

    def put(i: int) -> None:
        name, number = f"model{i % 100}", i // 100 + 1
        body = {**bodies[name], "version": number, "parent": f"{name}@{number - 1}"}
        data = records.encode(body)
        obstore.put(raw, f"{prefix}/versions/{name}/{number}", data, mode="create")

    import obstore

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(put, range(100, max(versions - 1, 100))))
    with Store(url) as store:
        store.save({"x": np.zeros(4)}, "model0")


def boto3_client(endpoint: str) -> Any | None:
    try:
        import boto3
    except ImportError:
        return None
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=ACCESS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=ACCESS["AWS_SECRET_ACCESS_KEY"],
        region_name="us-east-1",
    )


def ratio(ours: float, peer: float | None) -> str:
    return "n/a" if peer is None else f"{peer / ours:.2f}x"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=int(os.environ.get("AMBER_BENCH_S3_MB", 256)))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--versions", type=int, default=10_000)
    args = parser.parse_args(argv)
    try:
        import obstore  # noqa: F401
    except ImportError:
        print("obstore is not installed (pip install amber[s3]): nothing measured")
        return 1
    work = Path(tempfile.mkdtemp(prefix="amber-bench-s3-"))
    try:
        return _run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)  # GiBs of models, copies and caches


def _run(args: argparse.Namespace, work: Path) -> int:
    os.environ.update(ACCESS)
    os.environ["AWS_REGION"] = "us-east-1"
    os.environ["AMBER_CACHE"] = str(work / "cache")
    server = Server()
    try:
        return _measure(args, work, server)
    finally:
        server.server.stop()


def _measure(args: argparse.Namespace, work: Path, server: Server) -> int:
    import obstore

    os.environ["AWS_ENDPOINT_URL"] = server.endpoint
    size = args.mb << 20
    state = model(args.mb)
    nbytes = sum(a.nbytes for a in state.values())
    print(
        f"moto S3 on loopback; model {nbytes / 2**20:.0f} MiB in {len(state)} tensors; "
        f"median of {args.repeat}; amber {amber.__version__}"
    )
    rows: list[tuple[str, str, str]] = []

    # 1. push / pull against raw obstore and boto3 -------------------------------------
    local = work / "local"
    with Store(local) as store:
        store.save(state, "m")
    blob = work / "blob.bin"
    with blob.open("wb") as f:
        for array in state.values():
            f.write(memoryview(array).cast("B"))
    raw_bucket = server.bucket()
    raw = server.obstore(raw_bucket)
    t_obs_put = median_s(lambda: obstore.put(raw, "blob", blob, max_concurrency=8), args.repeat)

    def obs_get() -> None:
        result = obstore.get(raw, "blob")
        with (work / "got.bin").open("wb") as f:
            for chunk in result.stream(min_chunk_size=8 << 20):
                f.write(chunk)

    t_obs_get = median_s(obs_get, args.repeat)

    def obs_get_durable() -> None:
        # The same bytes made durable, as a pull makes the objects of the store it fills
        # (each fsynced before its version is committed): what the disk adds to a get.
        result = obstore.get(raw, "blob")
        with (work / "got.bin").open("wb") as f:
            for chunk in result.stream(min_chunk_size=8 << 20):
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())

    t_obs_get_durable = median_s(obs_get_durable, args.repeat)
    boto = boto3_client(server.endpoint)
    t_boto_put = t_boto_get = t_boto_get_durable = None
    if boto is not None:
        from boto3.s3.transfer import TransferConfig

        # One GET, not boto3's default 8 MiB ranged parts: moto reads the whole object for
        # every ranged GET, which makes ranged downloads of 1 GiB quadratic there (minutes).
        whole = TransferConfig(multipart_threshold=size + 1)
        t_boto_put = median_s(lambda: boto.upload_file(str(blob), raw_bucket, "b3"), args.repeat)
        t_boto_get = median_s(
            lambda: boto.download_file(raw_bucket, "b3", str(work / "b3.bin"), Config=whole),
            args.repeat,
        )

        def boto_get_durable() -> None:
            boto.download_file(raw_bucket, "b3", str(work / "b3.bin"), Config=whole)
            fd = os.open(work / "b3.bin", os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

        t_boto_get_durable = median_s(boto_get_durable, args.repeat)
    urls: list[str] = []

    def fresh_url() -> None:
        urls.append(f"s3://{server.bucket()}/team")

    t_push = median_s(lambda: Store(local).push("m", urls[-1]), args.repeat, fresh_url)
    pulled: list[Path] = []

    def fresh_local() -> None:
        pulled.append(work / f"pulled{len(pulled)}")

    t_pull = median_s(lambda: Store(pulled[-1]).pull(urls[-1], "m"), args.repeat, fresh_local)
    mbps = lambda t: f"{size / t / 2**20:.0f} MiB/s"  # noqa: E731
    rows.append(
        (
            "push (Store.push)",
            mbps(t_push),
            f"obstore put {ratio(t_push, t_obs_put)}, "
            f"boto3 upload_file {ratio(t_push, t_boto_put)}",
        )
    )
    rows.append(
        (
            "pull (Store.pull)",
            mbps(t_pull),
            f"obstore get {ratio(t_pull, t_obs_get)}, "
            f"get + fsync {ratio(t_pull, t_obs_get_durable)}, "
            f"boto3 download_file {ratio(t_pull, t_boto_get)}, "
            f"download_file + fsync {ratio(t_pull, t_boto_get_durable)}",
        )
    )
    rows.append(
        (
            "raw obstore put / get / get + fsync",
            f"{mbps(t_obs_put)} / {mbps(t_obs_get)} / {mbps(t_obs_get_durable)}",
            "",
        )
    )
    if boto is None:
        rows.append(("raw boto3", "missing (pip install boto3)", ""))
    else:
        rows.append(
            (
                "raw boto3 upload / download / download + fsync",
                f"{mbps(t_boto_put)} / {mbps(t_boto_get)} / {mbps(t_boto_get_durable)}",
                "",
            )
        )

    # 2. cold and warm loads ------------------------------------------------------------
    url = urls[-1]
    file = work / "m.amber"
    amber.save(state, file)
    obstore.put(raw, "m.amber", file, max_concurrency=8)

    def raw_then_load() -> None:
        result = obstore.get(raw, "m.amber")
        target = work / "downloaded.amber"
        with target.open("wb") as f:
            for chunk in result.stream(min_chunk_size=8 << 20):
                f.write(chunk)
        loaded = amber.load(target)
        sum(float(a[-1]) for a in loaded.values())

    def empty_cache() -> None:
        import shutil

        shutil.rmtree(work / "cache" / "objects", ignore_errors=True)

    def load_from(location: Any) -> Callable[[], None]:
        def run() -> None:
            with Store(location) as s:
                loaded = s.load("m")
                sum(float(a[-1]) for a in loaded.values())

        return run

    t_raw_load = median_s(raw_then_load, args.repeat)
    t_cold = median_s(load_from(url), args.repeat, empty_cache)
    load_from(url)()
    t_warm = median_s(load_from(url), args.repeat)
    t_local = median_s(load_from(local), args.repeat)
    rows.append(
        (
            "cold load from S3",
            f"{t_cold:.2f} s",
            f"raw download + amber.load {t_raw_load:.2f} s: {t_cold / t_raw_load:.2f}x time",
        )
    )
    rows.append(
        (
            "warm load (cached)",
            f"{t_warm * 1000:.0f} ms",
            f"local store load {t_local * 1000:.0f} ms: {t_warm / t_local:.2f}x time",
        )
    )

    # 3. dedup over the wire --------------------------------------------------------------
    rng = np.random.default_rng(1)
    names = sorted(state)
    changed = dict(state)
    for key in rng.choice(names, max(1, len(names) // 20), replace=False):
        changed[key] = state[key] + 1
    with Store(local) as store:
        store.save(changed, "m")
        dedup_url = f"s3://{server.bucket()}/dedup"
        full = store.push("m@1", dedup_url)
        report = store.push("m@2", dedup_url)
    rows.append(
        (
            "2nd version, 5% tensors changed",
            f"{report.bytes_sent / 2**20:.1f} MiB sent",
            f"full version {full.bytes_sent / 2**20:.1f} MiB: "
            f"{report.bytes_sent / full.bytes_sent:.3f}x",
        )
    )

    # 4. listing a store of many versions -------------------------------------------------
    many_bucket = server.bucket()
    many = f"s3://{many_bucket}/many"
    start = time.perf_counter()
    fill(server, many_bucket, "many", many, args.versions)
    fill_s = time.perf_counter() - start
    os.environ["AMBER_CACHE"] = str(work / "cache-ls")
    start = time.perf_counter()
    with Store(many) as store:
        count = sum(m.versions for m in store.models())
    first = time.perf_counter() - start

    def warm_ls() -> None:
        with Store(many) as s:
            s.models()

    warm = median_s(warm_ls, args.repeat)
    rows.append(
        (f"ls, {count} versions: first sync", f"{first:.2f} s", f"(filled in {fill_s:.0f} s)")
    )
    rows.append((f"ls, {count} versions: warm", f"{warm * 1000:.0f} ms", "target < 200 ms"))
    import subprocess

    def cli_ls() -> None:
        subprocess.run(
            [sys.executable, "-m", "amber.cli.main", "ls", "--store", many],
            check=True,
            stdout=subprocess.DEVNULL,
            env=os.environ,
        )

    def cli_help() -> None:
        subprocess.run(
            [sys.executable, "-m", "amber.cli.main", "--help"],
            check=True,
            stdout=subprocess.DEVNULL,
        )

    t_cli, t_help = median_s(cli_ls, args.repeat), median_s(cli_help, args.repeat)
    rows.append(
        (
            f"amber ls, {count} versions: warm",
            f"{t_cli * 1000:.0f} ms",
            f"a new process; `amber --help` alone takes {t_help * 1000:.0f} ms",
        )
    )

    width = max(len(r[0]) for r in rows)
    for label, value, note in rows:
        print(f"{label:<{width}}  {value:>22}  {note}")
    print("ratios for push/pull: amber throughput / peer throughput (>= 0.8 wanted)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
