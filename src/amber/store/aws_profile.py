"""AWS named profiles (``AWS_PROFILE``, ``profile=``) for s3:// stores.

obstore reads credentials from ``AWS_*`` variables and the instance's role, not from the
files of the AWS CLI. This reads the static keys of one profile there: ``aws_access_key_id``,
``aws_secret_access_key`` and ``aws_session_token`` from ``~/.aws/credentials``
(``$AWS_SHARED_CREDENTIALS_FILE``), ``region`` and ``endpoint_url`` from ``~/.aws/config``
(``$AWS_CONFIG_FILE``, section ``[profile NAME]``, or ``[default]``). Profiles that get
their keys another way (a role to assume, SSO, a credential process) are refused with the
command that exports their keys instead: amber never runs a program named in a file.
"""

from __future__ import annotations

import configparser
import os
from pathlib import Path

from amber.errors import InvalidArgumentError

_INDIRECT = ("role_arn", "sso_session", "sso_start_url", "credential_process", "web_identity")


def _read(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(path, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError, OSError) as exc:
        raise InvalidArgumentError(f"cannot read the AWS file {path}: {exc}") from None
    return parser


def profile_options(profile: str) -> dict[str, str]:
    """obstore S3 options (keys, region, endpoint) of the AWS profile ``profile``."""
    home = Path("~").expanduser()
    credentials = Path(
        os.environ.get("AWS_SHARED_CREDENTIALS_FILE") or home / ".aws" / "credentials"
    )
    config = Path(os.environ.get("AWS_CONFIG_FILE") or home / ".aws" / "config")
    keys = _read(credentials)
    settings = _read(config)
    section = "default" if profile == "default" else f"profile {profile}"
    found: dict[str, str] = {}
    if settings.has_section(section):
        found.update(settings[section])
    if keys.has_section(profile):
        found.update(keys[profile])
    if not found:
        raise InvalidArgumentError(
            f"no AWS profile {profile!r} in {credentials} or {config}; check AWS_PROFILE"
        )
    if "aws_access_key_id" not in found or "aws_secret_access_key" not in found:
        how = next((k for k in _INDIRECT if any(f.startswith(k) for f in found)), None)
        why = f"gets its keys through {how}" if how else "has no aws_access_key_id"
        raise InvalidArgumentError(
            f"AWS profile {profile!r} {why}, which amber does not read; export its keys "
            f'instead: eval "$(aws configure export-credentials --profile {profile} '
            '--format env)"'
        )
    out = {
        "access_key_id": found["aws_access_key_id"],
        "secret_access_key": found["aws_secret_access_key"],
    }
    if found.get("aws_session_token"):
        out["session_token"] = found["aws_session_token"]
    if found.get("region"):
        out["region"] = found["region"]
    if found.get("endpoint_url"):
        out["endpoint"] = found["endpoint_url"]
    return out
