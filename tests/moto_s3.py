"""moto's S3 in server mode on a free loopback port: a real HTTP S3 for the artifact tests.

Credentials are moto's dummy ones, given only to the processes that need them (the server, a
broker started with :func:`s3_env`) and to the boto3 clients built here; the test process's own
environment is left alone.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from tests.support import free_port, wait_for

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing-secret-never-shown",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@contextlib.contextmanager
def moto_server(log_dir: Path) -> Iterator[str]:
    """Start ``python -m moto.server`` on 127.0.0.1; its endpoint URL. Stopped by pid afterwards."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (log_dir / "moto.log").open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **CREDENTIALS},
    )

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"moto server exited with {proc.returncode}; see {log_dir / 'moto.log'}")
        try:
            return httpx.get(url + "/moto-api/", timeout=2).status_code < 500
        except httpx.TransportError:
            return False

    try:
        wait_for(ready, timeout=60, what=f"moto server on {url}")
        yield url
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        log.close()


def s3_client(endpoint_url: str) -> Any:
    """A boto3 S3 client on the moto server, with moto's credentials passed explicitly."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=CREDENTIALS["AWS_DEFAULT_REGION"],
        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )


def s3_env() -> dict[str, str]:
    """The environment of a broker process that uses the moto server (tests.support.Broker.start)."""
    path = os.pathsep.join(
        p for p in (str(Path(__file__).resolve().parent.parent), os.environ.get("PYTHONPATH")) if p
    )
    return {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": path, **CREDENTIALS}
