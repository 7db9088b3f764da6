"""Credentials on S3: refused keys, missing permissions and AWS CLI profiles, against a moto
server that enforces IAM (its ``/moto-api/reset-auth`` switch: after the users below are
made, every request must be signed by a known key whose policy allows the action)."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from amber.errors import InvalidArgumentError, StoreError
from amber.store import Store
from tests.store.s3_server import S3Server

boto3 = pytest.importorskip("boto3", reason="boto3 (a dependency of moto) is not installed")


def _auth(endpoint: str, count: str) -> None:
    request = urllib.request.Request(
        f"{endpoint}/moto-api/reset-auth",
        data=count.encode(),
        method="POST",
        headers={"Content-Type": "text/plain"},
    )
    urllib.request.urlopen(request, timeout=10).close()


@pytest.fixture
def users(s3_server: S3Server, s3_url: str) -> Iterator[dict[str, tuple[str, str]]]:
    """Keys of a writer (s3:*) and a reader (s3:Get*, s3:List*: moto checks listings as
    s3:ListObjectsV2, which s3:ListBucket does not cover there), with IAM enforced."""
    iam = boto3.client(
        "iam",
        endpoint_url=s3_server.endpoint,
        aws_access_key_id="admin",
        aws_secret_access_key="admin",
        region_name="us-east-1",
    )
    out = {}
    for name, actions in (("writer", ["s3:*"]), ("reader", ["s3:Get*", "s3:List*"])):
        user = f"{name}-{s3_url.split('/')[2]}"
        iam.create_user(UserName=user)
        policy = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}],
        }
        iam.put_user_policy(UserName=user, PolicyName="p", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName=user)["AccessKey"]
        out[name] = (key["AccessKeyId"], key["SecretAccessKey"])
    _auth(s3_server.endpoint, "0")
    try:
        yield out
    finally:
        _auth(s3_server.endpoint, "inf")  # the other tests' server accepts any key again


def _use(monkeypatch: pytest.MonkeyPatch, keys: tuple[str, str]) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", keys[0])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", keys[1])


def _state(s3_url: str, keys: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> Any:
    _use(monkeypatch, keys)
    with Store(s3_url) as store:
        names = store.ledger.names()
        return sorted(store.backend.list("")), {n: store.ledger.numbers(n) for n in names}


def test_refused_credentials_are_a_clear_error(
    users: dict[str, tuple[str, str]], s3_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _use(monkeypatch, users["writer"])
    with Store(s3_url) as store:
        store.save({"w": np.arange(100_000)}, "m")
    before = _state(s3_url, users["writer"], monkeypatch)
    for keys, code in (
        (("AKIAIOSFODNN7EXAMPLE", "not-a-secret"), "InvalidAccessKeyId"),
        ((users["writer"][0], "a-wrong-secret"), "SignatureDoesNotMatch"),
    ):
        _use(monkeypatch, keys)
        with pytest.raises(StoreError, match=rf"refused the credentials \({code}\).*AWS_SECRET"):
            Store(s3_url)
    assert _state(s3_url, users["writer"], monkeypatch) == before


def test_missing_permission_is_a_clear_error_and_changes_nothing(
    users: dict[str, tuple[str, str]], s3_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _use(monkeypatch, users["writer"])
    with Store(s3_url) as store:
        store.save({"w": np.arange(100_000)}, "m")
    before = _state(s3_url, users["writer"], monkeypatch)
    _use(monkeypatch, users["reader"])
    with Store(s3_url) as store:
        assert np.array_equal(store.load("m")["w"], np.arange(100_000))  # reading is allowed
        for action in (
            lambda: store.save({"w": np.arange(5)}, "m"),
            lambda: store.save({"w": np.arange(200_000)}, "m"),  # an object to upload first
            lambda: store.set_alias("m@1", "production"),
            lambda: store.set_tags("m@1", {"stage": "qa"}),
            lambda: store.delete("m@1"),
        ):
            with pytest.raises(StoreError, match=r"access denied \(HTTP 403\).*s3:PutObject"):
                action()
        assert [v.version for v in store.versions("m")] == [1]
    assert _state(s3_url, users["writer"], monkeypatch) == before


@pytest.fixture
def aws_files(
    users: dict[str, tuple[str, str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AWS CLI files with the profiles ``team`` (the writer's keys), ``broken`` (keys the
    server refuses) and ``sso`` (keys from a program amber will not run)."""
    credentials, config = tmp_path / "credentials", tmp_path / "config"
    key, secret = users["writer"]
    credentials.write_text(
        f"[team]\naws_access_key_id = {key}\naws_secret_access_key = {secret}\n"
        "[broken]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key = x\n"
    )
    config.write_text(
        "[profile team]\nregion = us-east-1\n"
        "[profile sso]\nsso_session = corp\nregion = us-east-1\n"
    )
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))


@pytest.mark.usefixtures("aws_files")
def test_an_aws_profile_supplies_the_keys(s3_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_PROFILE", "team")
    with Store(s3_url) as store:
        assert store.save({"w": 1}, "m").version == 1
    monkeypatch.setenv("AWS_PROFILE", "broken")
    with pytest.raises(StoreError, match="refused the credentials"):
        Store(s3_url)
    monkeypatch.setenv("AWS_PROFILE", "sso")
    with pytest.raises(InvalidArgumentError, match="export-credentials --profile sso"):
        Store(s3_url)
    monkeypatch.setenv("AWS_PROFILE", "nobody")
    with pytest.raises(InvalidArgumentError, match="no AWS profile 'nobody'"):
        Store(s3_url)


@pytest.mark.usefixtures("aws_files")
def test_store_takes_a_profile_that_wins_over_the_environment(
    s3_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Keys the server refuses in the environment: the profile named here is what is used.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "refused")
    with pytest.raises(StoreError, match="refused the credentials"):
        Store(s3_url)
    with Store(s3_url, profile="team") as store:
        assert store.save({"w": 1}, "m").version == 1
    with pytest.raises(InvalidArgumentError, match="no AWS profile 'nobody'"):
        Store(s3_url, profile="nobody")
    for bad in ("", 3, object()):
        with pytest.raises(InvalidArgumentError, match="AWS profile name") as refused:
            Store(s3_url, profile=bad)  # type: ignore[arg-type]
        assert "0x" not in str(refused.value)  # no object reprs or addresses
    with pytest.raises(InvalidArgumentError, match="s3:// stores only"):
        Store(tmp_path / "local", profile="team")
    assert not (tmp_path / "local").exists()
