"""Fixtures of the store tests: a real S3 server (moto, loopback) for the s3:// backend."""

from tests.store.s3_server import proxy, s3_bucket, s3_server, s3_url

__all__ = ["proxy", "s3_bucket", "s3_server", "s3_url"]
