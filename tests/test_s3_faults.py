"""S3 faults against a real moto server: an outage that ends is retried through, a hung
server fails within a bounded time, and an upload killed midway leaves no manifest, so
no reader ever takes half a bundle for a whole one."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid

import httpx
import pytest
from moto.server import ThreadedMotoServer

from llarapp import storage
from llarapp.errors import BundleError, StorageError
from llarapp.locks import LockHeld
from llarapp.serving.bundle import Bundle
from llarapp.serving.launch import free_port

pytestmark = pytest.mark.slow


def use_endpoint(monkeypatch, endpoint: str, **settings: str) -> str:
    """Point llarapp.storage at ``endpoint`` and make a fresh bucket there."""
    for name, value in {"S3_ENDPOINT": endpoint, "S3_USE_HTTPS": "0",
                        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_REGION": "us-east-1", **settings}.items():
        monkeypatch.setenv(name, value)
    bucket = f"faults-{uuid.uuid4().hex[:8]}"
    storage.s3_client().make_bucket(bucket)
    return bucket


def test_a_server_that_stops_and_comes_back_is_retried(monkeypatch):
    port = free_port()
    servers = [ThreadedMotoServer(ip_address="127.0.0.1", port=port)]
    servers[0].start()
    try:
        bucket = use_endpoint(monkeypatch, f"127.0.0.1:{port}", LLARAPP_S3_MAX_ATTEMPTS="6",
                              LLARAPP_S3_BACKOFF_S="0.2")
        storage.write_bytes(f"s3://{bucket}/model/weights.bin", b"weights")
        servers[0].stop()  # down: connections are refused

        def come_back():
            servers.append(ThreadedMotoServer(ip_address="127.0.0.1", port=port))
            servers[-1].start()

        threading.Timer(1.0, come_back).start()
        start = time.monotonic()
        assert storage.read_bytes(f"s3://{bucket}/model/weights.bin") == b"weights"
        assert time.monotonic() - start >= 0.9  # it waited the outage out
    finally:
        time.sleep(0.1)
        for server in servers:
            server.stop()


@pytest.fixture()
def moto_process():
    """moto in its own process, so that it can be frozen with SIGSTOP."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                                str(port)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/moto-api/", timeout=1)
            break
        except httpx.TransportError:
            assert time.monotonic() < deadline and process.poll() is None, "moto never started"
            time.sleep(0.2)
    yield process, f"127.0.0.1:{port}"
    process.send_signal(signal.SIGCONT)
    process.terminate()
    process.wait(30)


def test_a_hung_server_times_out_within_a_bounded_time(monkeypatch, moto_process):
    process, endpoint = moto_process
    bucket = use_endpoint(monkeypatch, endpoint, LLARAPP_S3_TIMEOUT_S="1",
                          LLARAPP_S3_MAX_ATTEMPTS="2", LLARAPP_S3_BACKOFF_S="0.1")
    storage.write_bytes(f"s3://{bucket}/key", b"v")
    process.send_signal(signal.SIGSTOP)  # accepts connections (the kernel does), never answers
    start = time.monotonic()
    with pytest.raises(StorageError, match="after 2 attempts"):
        storage.read_bytes(f"s3://{bucket}/key")
    assert time.monotonic() - start < 2 * 1 + 0.1 + 2  # attempts × timeout + backoff + slack
    process.send_signal(signal.SIGCONT)
    assert storage.read_bytes(f"s3://{bucket}/key") == b"v"


UPLOADER = textwrap.dedent("""
    import sys
    from llarapp.storage import atomic_dir
    with atomic_dir(sys.argv[1]) as folder:
        for i in range(300):
            (folder / f"part-{i:03d}.bin").write_bytes(bytes(200_000))
        (folder / "manifest.json").write_text('{"kind": "serving_bundle"}')
""")


def test_an_upload_killed_midway_leaves_no_manifest(monkeypatch, moto_process):
    _, endpoint = moto_process
    bucket = use_endpoint(monkeypatch, endpoint)
    prefix = f"s3://{bucket}/bundles/v7"
    uploader = subprocess.Popen([sys.executable, "-c", UPLOADER, prefix])
    deadline = time.monotonic() + 120
    while not (storage.exists(prefix) and len(storage.list_uris(prefix)) >= 20):
        assert uploader.poll() is None, "the upload finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    uploader.kill()
    uploader.wait(30)
    names = {uri.rsplit("/", 1)[-1] for uri in storage.list_uris(prefix)}
    assert 20 <= len(names) < 300 and "manifest.json" not in names
    with pytest.raises(BundleError, match="has no manifest.json"):
        Bundle.load(prefix)
    # the dead writer's lock stays, and says how to clear it
    with pytest.raises(LockHeld, match="delete the lock"):
        with storage.atomic_dir(prefix):
            pass
    storage.remove(prefix + ".lock")
    with storage.atomic_dir(prefix) as folder:  # a whole new upload replaces the half one
        (folder / "manifest.json").write_text("{}")
    assert {u.rsplit("/", 1)[-1] for u in storage.list_uris(prefix)} == {"manifest.json"}
