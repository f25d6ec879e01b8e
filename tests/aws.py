"""A moto server on 127.0.0.1 for the AWS paths (real HTTP through boto3)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws(moto_endpoint: str, env: pytest.MonkeyPatch) -> str:
    """boto3 (and so Powertools) pointed at the moto server; returns its URL."""
    for name, value in AWS_ENV.items():
        env.setenv(name, value)
    env.delenv("AWS_PROFILE", raising=False)
    env.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    return moto_endpoint


def client(service: str):
    import boto3

    return boto3.client(service)
