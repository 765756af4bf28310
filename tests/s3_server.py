"""A real S3 server on 127.0.0.1 for tests: moto's server mode, started and stopped by the tests themselves.

``s3_server`` (session fixture) yields an ``S3Server`` whose ``env`` holds the standard AWS variables
(``AWS_ENDPOINT_URL`` and credentials) that boto3, s3fs and delta-rs all read; ``s3_env`` sets them for one
test. Buckets persist for the session, so each test makes its own (``server.bucket("name")``).
``s3_auth_server`` is a second server that checks access keys, so every request with made-up keys is denied.

The server runs in its own process: moto's server loads Flask, whose app-context proxy breaks vLLM's
start-up when both sit in one test process.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class S3Server:
    endpoint: str

    @property
    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            # delta-rs: plain http endpoint, and no DynamoDB lock needed for a single-writer test bucket
            "AWS_ALLOW_HTTP": "true",
            "AWS_S3_ALLOW_UNSAFE_RENAME": "true",
        }

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        )

    def bucket(self, name: str) -> str:
        """Create bucket ``name`` (if absent) and return it."""
        client = self.client()
        if name not in {b["Name"] for b in client.list_buckets().get("Buckets", [])}:
            client.create_bucket(Bucket=name)
        return name


def _serve(check_keys: bool):
    port = _free_port()
    env = dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT="0" if check_keys else "inf")
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2)
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"moto server did not start on {endpoint}") from None
            time.sleep(0.2)
    try:
        yield S3Server(endpoint=endpoint)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="session")
def s3_server():
    yield from _serve(check_keys=False)


@pytest.fixture(scope="session")
def s3_auth_server():
    yield from _serve(check_keys=True)


@pytest.fixture
def s3_env(s3_server, monkeypatch):
    """The AWS variables pointing at the local server, for the test's process (and Spark workers it starts)."""
    for key, value in s3_server.env.items():
        monkeypatch.setenv(key, value)
    return s3_server
