"""Bad input on S3 stores: missing buckets, hostile keys planted in the bucket, lying
records, a prefix holding something that is not a store, malformed locations."""

from __future__ import annotations

import json
import urllib.request

import numpy as np
import pytest

from amber.errors import CorruptFileError, FormatError, InvalidArgumentError, StoreError
from amber.store import Store
from amber.store.s3 import S3Backend
from tests.store.s3_server import ACCESS, S3Server


def _plant(server: S3Server, bucket: str, key: str, data: bytes) -> None:
    """Write a raw object into the bucket behind amber's back (moto takes unsigned PUTs)."""
    request = urllib.request.Request(
        f"{server.endpoint}/{bucket}/{key}",
        data=data,
        method="PUT",
        headers={"Content-Type": "application/octet-stream"},  # not a form: kept as is
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


def _bucket_of(url: str) -> str:
    return url.split("/")[2]


@pytest.mark.parametrize(
    "location",
    ["s3://", "s3:///prefix", "s3://bucket/pre fix", "s3://bucket/a/../b", "s3://b/x?region=y"],
)
def test_malformed_locations(location: str, s3_url: str) -> None:
    with pytest.raises((InvalidArgumentError, StoreError)):
        Store(location)


def test_bad_endpoints(s3_bucket: str) -> None:
    for endpoint in ["ftp://127.0.0.1:1", "not a url", "http://10.1.2.3:9000"]:
        with pytest.raises(InvalidArgumentError):
            S3Backend(s3_bucket, "x", endpoint=endpoint, **ACCESS)


def test_unreachable_endpoint_is_a_clear_error(s3_bucket: str) -> None:
    with pytest.raises(StoreError, match="could not list"):
        S3Backend(s3_bucket, "x", endpoint="http://127.0.0.1:9", **ACCESS)


def test_hostile_keys_are_ignored_and_reported(s3_url: str, s3_server: S3Server) -> None:
    bucket = _bucket_of(s3_url)
    with Store(s3_url) as store:
        store.save({"w": np.arange(10)}, "m")
    planted = ["store/refs/m/bad%20name", "store/versions/m/x:y", "store/objects/zz/a~b"]
    for key in planted:
        _plant(s3_server, bucket, key, b"{}")
    _plant(s3_server, bucket, "elsewhere/versions/m/1", b"not ours")  # outside the prefix
    with Store(s3_url) as store:
        assert [v.version for v in store.versions("m")] == [1]
        assert store.load("m")["w"].tolist() == list(range(10))
        report = store.check()
        assert not report.ok
        text = str(report)
        assert "'refs/m/bad name'" in text and "not a valid store key" in text
        assert "'versions/m/x:y'" in text and "'objects/zz/a~b'" in text
        assert "elsewhere" not in text  # nothing outside the prefix is read
        store.gc(grace=0)  # ignores them, deletes nothing outside objects/
    assert s3_server.backend(bucket, "elsewhere").get("versions/m/1") == b"not ours"


def test_a_prefix_of_other_things_is_not_a_store(s3_url: str, s3_server: S3Server) -> None:
    bucket = _bucket_of(s3_url)
    _plant(s3_server, bucket, "store/data/file.csv", b"a,b\n1,2\n")
    _plant(s3_server, bucket, "store/versions/m/1", b"\x00\x01 not json")
    with Store(s3_url) as store:
        assert store.models() == []  # the index skips what it cannot read
        with pytest.raises(StoreError, match=r"malformed|store\.check"):
            store.load("m@1")
        report = store.check()
        assert not report.ok and "data/file.csv" in str(report)


def test_lying_records(s3_url: str, s3_server: S3Server) -> None:
    with Store(s3_url) as store:
        store.save({"w": np.arange(100_000, dtype=np.float64)}, "m")
        record = json.loads(store.backend.get("versions/m/1") or b"")
    bucket = _bucket_of(s3_url)
    # m@2 claims its tensor is twice the size of the object it names.
    tensor = record["tensors"][0]
    lying = {**record, "version": 2, "tensors": [{**tensor, "shape": [200_000]}]}
    lying["tensors"][0]["nbytes"] = 1_600_000
    _plant(s3_server, bucket, "store/versions/m/2", json.dumps(lying).encode())
    # m@3 names an object that does not exist.
    ghost = {**tensor, "digest": "blake3:" + "ab" * 32}
    _plant(
        s3_server,
        bucket,
        "store/versions/m/3",
        json.dumps({**record, "version": 3, "tensors": [ghost]}).encode(),
    )
    # m@4 says it is m@9.
    _plant(s3_server, bucket, "store/versions/m/4", json.dumps({**record, "version": 9}).encode())
    with Store(s3_url) as store:
        for spec in ("m@2", "m@3", "m@4"):
            with pytest.raises((CorruptFileError, StoreError, FormatError)):
                store.load(spec)
        assert store.load("m@1")["w"][-1] == 99_999
        assert not store.check().ok


def test_a_dot_dot_key_is_a_clear_error_until_removed(s3_url: str, s3_server: S3Server) -> None:
    bucket = _bucket_of(s3_url)
    with Store(s3_url) as store:
        store.save({"w": np.arange(10)}, "m")
    _plant(s3_server, bucket, "store/versions/m/../../../outside", b"{}")
    # obstore refuses to list a folder holding such a key: a clear error, not a wrong answer
    with pytest.raises(StoreError, match=r"'\.\.' or empty segment.*delete that key"):
        Store(s3_url)
    boto3 = pytest.importorskip("boto3", reason="boto3 (with moto) deletes the key")
    client = boto3.client(
        "s3",
        endpoint_url=s3_server.endpoint,
        aws_access_key_id=ACCESS["access_key_id"],
        aws_secret_access_key=ACCESS["secret_access_key"],
        region_name="us-east-1",
    )
    client.delete_object(Bucket=bucket, Key="store/versions/m/../../../outside")
    with Store(s3_url) as store:
        assert store.load("m")["w"].tolist() == list(range(10))


def test_huge_documents_are_refused_before_they_are_read(
    s3_url: str, s3_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A record, alias, tags document or gc marker larger than amber ever writes is refused
    with a StoreError naming it, and at most its cap (plus one byte) is downloaded."""
    from amber.store import ledger

    monkeypatch.setattr(ledger, "MAX_RECORD", 50_000)  # real caps: 320 MiB, 1 MiB
    monkeypatch.setattr(ledger, "MAX_SMALL", 4_000)
    with Store(s3_url) as store:
        store.save({"w": np.arange(100_000, dtype=np.float64)}, "m")
        store.save({"w": 1}, "n")
        digest = json.loads(store.backend.get("versions/m/1") or b"")["tensors"][0]["digest"]
    bucket, hex_ = _bucket_of(s3_url), digest.split(":")[1]
    filler = b" " * 200_000
    _plant(s3_server, bucket, "store/versions/m/2", b'{"format": "amber.store.version"' + filler)
    _plant(s3_server, bucket, "store/refs/n/production", b'{"version": 1' + filler + b"}")
    _plant(s3_server, bucket, "store/tags/m/1", b'{"a": "b"' + filler + b"}")
    # The marker exists already (the save touched the object): overwritten by a signed PUT.
    import obstore
    from obstore.store import S3Store

    raw = S3Store(
        bucket,
        endpoint=s3_server.endpoint,
        region="us-east-1",
        client_options={"allow_http": True},
        **ACCESS,
    )
    obstore.put(raw, f"store/locks/objects/{hex_[:2]}/{hex_}", b"{" + filler + b"}")
    with Store(s3_url) as store:  # the open itself survives: damaged documents are skipped
        largest: list[int] = []
        read_range = store.backend.read_range

        def counted(key: str, offset: int, length: int) -> bytes | None:
            data = read_range(key, offset, length)
            largest.append(len(data or b""))
            return data

        store.backend.read_range = counted  # type: ignore[method-assign]
        for action, what in (
            (lambda: store.load("m@2"), "record of m@2"),
            (lambda: store.load("n@production"), "alias n@production"),
            (lambda: store.get("m@1"), "tags of m@1"),
        ):
            with pytest.raises(StoreError, match=rf"{what} .* is larger than .* not read"):
                action()
        assert max(largest) <= 50_001
        with pytest.raises(StoreError, match=r"marker of .* is damaged"):
            store.gc(grace=0)
        report = store.check()
        assert not report.ok and "larger than" in str(report)
