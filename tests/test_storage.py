import pytest

from llarapp import storage
from llarapp.errors import StorageError, StorageNotFoundError


@pytest.mark.parametrize("uri, scheme, bucket, key", [
    ("data/x.json", "file", "", "data/x.json"),
    ("file:///tmp/a", "file", "", "/tmp/a"),
    ("s3://bucket/pre/fix", "s3", "bucket", "pre/fix"),
    ("s3://bucket", "s3", "bucket", ""),
])
def test_parse_uri(uri, scheme, bucket, key):
    loc = storage.parse_uri(uri)
    assert (loc.scheme, loc.bucket, loc.key) == (scheme, bucket, key)


@pytest.mark.parametrize("uri", ["gs://bucket/x", "s3:///nobucket"])
def test_unsupported_uris_are_rejected(uri):
    with pytest.raises(StorageError):
        storage.parse_uri(uri)


def test_local_write_read_list(tmp_path):
    storage.write_bytes(tmp_path / "a" / "b.bin", b"hello")
    storage.write_bytes(f"file://{tmp_path}/c.bin", b"x")
    assert storage.read_bytes(tmp_path / "a" / "b.bin") == b"hello"
    assert storage.list_uris(tmp_path) == [str(tmp_path / "a" / "b.bin"), str(tmp_path / "c.bin")]
    assert not [p for p in tmp_path.rglob("*") if ".tmp-" in p.name]


def test_local_missing_file_is_not_found(tmp_path):
    with pytest.raises(StorageNotFoundError):
        storage.read_bytes(tmp_path / "nope")
    with pytest.raises(StorageNotFoundError):
        storage.list_uris(tmp_path / "nope")


def test_atomic_dir_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "artifact"
    with pytest.raises(RuntimeError), storage.atomic_dir(target) as folder:
        (folder / "half.parquet").write_bytes(b"partial")
        raise RuntimeError("stage crashed")
    assert list(tmp_path.iterdir()) == []


def test_atomic_dir_replaces_an_existing_artifact_whole(tmp_path):
    target = tmp_path / "artifact"
    with storage.atomic_dir(target) as folder:
        (folder / "old.txt").write_text("old")
    with storage.atomic_dir(target) as folder:
        (folder / "new.txt").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["artifact"]


def test_s3_put_get_list(s3_env):
    base = f"s3://{s3_env}/prefix"
    storage.write_bytes(f"{base}/one.json", b"1")
    storage.write_bytes(f"{base}/sub/two.json", b"22")
    assert storage.read_bytes(f"{base}/sub/two.json") == b"22"
    assert storage.list_uris(base) == [f"{base}/one.json", f"{base}/sub/two.json"]
    assert storage.list_uris(f"{base}/one.json") == [f"{base}/one.json"]
    assert storage.exists(f"{base}/one.json") and not storage.exists(f"{base}/three")


def test_s3_round_trip_of_a_folder(s3_env, tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "manifest.json").write_text("{}")
    (tmp_path / "src" / "data.bin").write_bytes(b"abc")
    storage.upload_dir(tmp_path / "src", f"s3://{s3_env}/art")
    storage.download_dir(f"s3://{s3_env}/art", tmp_path / "dst")
    assert (tmp_path / "dst" / "data.bin").read_bytes() == b"abc"


def test_s3_missing_bucket_says_so(s3_env):
    with pytest.raises(StorageNotFoundError, match="bucket 'no-such-bucket' does not exist"):
        storage.list_uris("s3://no-such-bucket/x")


def test_s3_missing_object_is_not_found(s3_env):
    with pytest.raises(StorageNotFoundError, match="no such object"):
        storage.read_bytes(f"s3://{s3_env}/missing.json")


def test_s3_unreachable_endpoint_retries_with_backoff_then_fails(monkeypatch):
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("S3_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    monkeypatch.setenv("LLARAPP_S3_MAX_ATTEMPTS", "3")
    monkeypatch.setenv("LLARAPP_S3_BACKOFF_S", "0.05")
    sleeps = []
    monkeypatch.setattr(storage.time, "sleep", sleeps.append)
    with pytest.raises(StorageError, match="after 3 attempts"):
        storage.read_bytes("s3://bucket/key")
    assert sleeps == [0.05, 0.1]


def test_s3_needs_an_endpoint(monkeypatch):
    monkeypatch.delenv("S3_ENDPOINT", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with pytest.raises(StorageError, match="set S3_ENDPOINT"):
        storage.read_bytes("s3://bucket/key")


def test_atomic_dir_to_s3_uploads_manifest_last(s3_env, monkeypatch):
    order = []
    real = storage.write_bytes
    monkeypatch.setattr(storage, "write_bytes",
                        lambda uri, data: (order.append(str(uri).rsplit("/", 1)[-1]),
                                           real(uri, data)))
    with storage.atomic_dir(f"s3://{s3_env}/artifact") as folder:
        (folder / "manifest.json").write_text("{}")
        (folder / "z.parquet").write_bytes(b"z")
    assert order == ["z.parquet", "manifest.json"]
