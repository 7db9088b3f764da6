"""Fixtures of the batch tests: the store tests' real S3 server (moto on loopback), shared
rather than copied, for the s3:// loading path."""

from tests.store.s3_server import s3_server, s3_url

__all__ = ["s3_server", "s3_url"]
