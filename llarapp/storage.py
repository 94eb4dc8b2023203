"""One way to read, write and list data: plain paths, ``file://`` and ``s3://bucket/key``.

S3 goes through the ``minio`` client. Endpoint and credentials come from the environment
only, with the same names KServe's storage initializer reads:

* ``S3_ENDPOINT`` (``host:port`` or a URL; ``AWS_ENDPOINT_URL`` also works)
* ``AWS_ACCESS_KEY_ID`` and ``AWS_SECRET_ACCESS_KEY``
* ``S3_USE_HTTPS`` (``1``/``0``; a URL's scheme wins), ``AWS_REGION`` (optional)
* ``LLARAPP_S3_MAX_ATTEMPTS`` (default 4) and ``LLARAPP_S3_BACKOFF_S`` (default 0.5)
* ``LLARAPP_S3_TIMEOUT_S`` (default 60): the longest wait for one answer, so a hung
  server fails a call within attempts × timeout + the backoff, never hangs it

Local writes are atomic: data goes to a temporary name in the same folder, then is renamed.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlparse

from llarapp.errors import StorageError, StorageNotFoundError

T = TypeVar("T")

# S3 error codes worth another attempt; anything else is a caller's mistake.
_RETRYABLE_CODES = {"InternalError", "SlowDown", "ServiceUnavailable", "RequestTimeout",
                    "ThrottlingException", "RequestTimeTooSkewed"}
_NOT_FOUND_CODES = {"NoSuchKey", "NoSuchBucket", "NoSuchObject"}


@dataclass(frozen=True)
class Location:
    """A parsed storage URI. ``bucket`` is empty for local paths."""

    scheme: str  # "file" or "s3"
    bucket: str
    key: str

    @property
    def is_s3(self) -> bool:
        return self.scheme == "s3"

    @property
    def path(self) -> Path:
        return Path(self.key)

    def join(self, *parts: str) -> Location:
        if self.is_s3:
            key = "/".join([self.key.rstrip("/"), *(p.strip("/") for p in parts)]).lstrip("/")
        else:
            key = str(Path(self.key, *parts))
        return Location(self.scheme, self.bucket, key)

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}" if self.is_s3 else self.key


def parse_uri(uri: str | os.PathLike[str]) -> Location:
    text = os.fspath(uri)
    if text.startswith("s3://"):
        parsed = urlparse(text)
        if not parsed.netloc:
            raise StorageError(f"{text!r} has no bucket; write s3://BUCKET/PREFIX")
        return Location("s3", parsed.netloc, parsed.path.lstrip("/"))
    if text.startswith("file://"):
        text = text[len("file://"):]
    elif "://" in text:
        raise StorageError(f"unsupported storage scheme in {text!r}; use a path, file:// or s3://")
    return Location("file", "", text)


# ---------------------------------------------------------------- S3 client and retries


def s3_client():
    """A minio client configured from the environment (see the module docstring)."""
    import minio
    import urllib3

    endpoint = os.environ.get("S3_ENDPOINT") or os.environ.get("AWS_ENDPOINT_URL")
    if not endpoint:
        raise StorageError(
            "s3:// needs an endpoint: set S3_ENDPOINT (for example minio.kubeflow:9000) "
            "and AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY"
        )
    secure = os.environ.get("S3_USE_HTTPS", "1").lower() in ("1", "true", "yes")
    if "://" in endpoint:
        parsed = urlparse(endpoint)
        secure, endpoint = parsed.scheme == "https", parsed.netloc
    # Our own loop retries with backoff; urllib3's retries would hide the attempts.
    wait = float(os.environ.get("LLARAPP_S3_TIMEOUT_S", "60"))  # a hung server is an error
    http = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=min(5.0, wait), read=wait), retries=urllib3.Retry(total=0)
    )
    return minio.Minio(
        endpoint,
        access_key=os.environ.get("AWS_ACCESS_KEY_ID"),
        secret_key=os.environ.get("AWS_SECRET_ACCESS_KEY"),
        region=os.environ.get("AWS_REGION") or None,
        secure=secure,
        http_client=http,
    )


def _with_retries(action: str, loc: Location, call: Callable[[], T]) -> T:
    """Run an S3 call; retry transient failures with exponential backoff, then raise."""
    from minio.error import MinioException, S3Error
    from urllib3.exceptions import HTTPError

    transient = (OSError, HTTPError, MinioException)
    attempts = max(1, int(os.environ.get("LLARAPP_S3_MAX_ATTEMPTS", "4")))
    backoff = float(os.environ.get("LLARAPP_S3_BACKOFF_S", "0.5"))
    last: Exception | None = None
    for attempt in range(attempts):
        try:
            return call()
        except S3Error as exc:
            if exc.code == "NoSuchBucket":
                raise StorageNotFoundError(
                    f"cannot {action} {loc}: bucket {loc.bucket!r} does not exist. "
                    f"Create it (mc mb <alias>/{loc.bucket}) or check the URI and S3_ENDPOINT"
                ) from exc
            if exc.code in _NOT_FOUND_CODES:
                raise StorageNotFoundError(f"cannot {action} {loc}: no such object") from exc
            if exc.code not in _RETRYABLE_CODES:
                raise StorageError(f"cannot {action} {loc}: {exc.code}: {exc.message}") from exc
            last = exc
        except transient as exc:  # connection refused or reset, timeouts, 5xx without a code
            last = exc
        if attempt + 1 < attempts:
            time.sleep(backoff * 2**attempt)
    raise StorageError(
        f"cannot {action} {loc} after {attempts} attempts: {last}. "
        "Check that S3_ENDPOINT is reachable and the credentials are right"
    ) from last


# ---------------------------------------------------------------- read / write / list


def read_bytes(uri: str | os.PathLike[str]) -> bytes:
    loc = parse_uri(uri)
    if not loc.is_s3:
        try:
            return loc.path.read_bytes()
        except FileNotFoundError as exc:
            raise StorageNotFoundError(f"{loc} does not exist") from exc
        except OSError as exc:
            raise StorageError(f"cannot read {loc}: {exc}") from exc
    client = s3_client()

    def get() -> bytes:
        response = client.get_object(loc.bucket, loc.key)
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()

    return _with_retries("read", loc, get)


def write_bytes(uri: str | os.PathLike[str], data: bytes) -> None:
    loc = parse_uri(uri)
    if not loc.is_s3:
        atomic_write_bytes(loc.path, data)
        return
    client = s3_client()
    _with_retries(
        "write", loc,
        lambda: client.put_object(loc.bucket, loc.key, io.BytesIO(data), length=len(data)),
    )


def list_uris(uri: str | os.PathLike[str]) -> list[str]:
    """Every file below ``uri`` (recursively), as full URIs, sorted."""
    loc = parse_uri(uri)
    if not loc.is_s3:
        if loc.path.is_file():
            return [str(loc.path)]
        if not loc.path.is_dir():
            raise StorageNotFoundError(f"{loc} does not exist")
        return sorted(str(p) for p in loc.path.rglob("*") if p.is_file())
    client = s3_client()
    prefix = loc.key.rstrip("/") + "/" if loc.key else ""

    def listing() -> list[str]:
        objects = client.list_objects(loc.bucket, prefix=prefix, recursive=True)
        return sorted(f"s3://{loc.bucket}/{o.object_name}" for o in objects if not o.is_dir)

    found = _with_retries("list", loc, listing)
    if not found and loc.key:  # the URI may name one object
        single = _with_retries("list", loc, lambda: list(
            client.list_objects(loc.bucket, prefix=loc.key)))
        found = [f"s3://{loc.bucket}/{o.object_name}" for o in single
                 if o.object_name == loc.key]
    return found


def exists(uri: str | os.PathLike[str]) -> bool:
    loc = parse_uri(uri)
    if not loc.is_s3:
        return loc.path.exists()
    try:
        return bool(list_uris(uri))
    except StorageNotFoundError:
        return False


def upload_dir(local_dir: str | os.PathLike[str], uri: str, *, last: str = "manifest.json") -> None:
    """Copy a local folder to ``uri``. The file named ``last`` goes up last: readers treat
    a prefix without it as incomplete, so a failed upload never looks finished. Over an
    earlier upload, its ``last`` file is removed first and its files that the new folder
    lacks afterwards, so no reader ever sees old and new files under one manifest."""
    root, target = Path(local_dir), parse_uri(uri)
    files = {str(target.join(p.relative_to(root).as_posix())): p
             for p in sorted(root.rglob("*")) if p.is_file()}
    before = list_uris(uri) if target.is_s3 else []  # [] for a new prefix
    final = [key for key, path in files.items() if path.name == last]
    if before:
        remove(str(target.join(last)))
    for key in [k for k in files if k not in final]:
        write_bytes(key, files[key].read_bytes())
    for stale in set(before) - set(files):
        remove(stale)
    for key in final:
        write_bytes(key, files[key].read_bytes())


def publish_dir(local_dir: str | os.PathLike[str], uri: str) -> None:
    """:func:`upload_dir`, by one writer at a time (:func:`llarapp.locks.exclusive`)."""
    from llarapp.locks import exclusive

    with exclusive(uri, "uploaded"):
        upload_dir(local_dir, uri)


def remove(uri: str | os.PathLike[str]) -> None:
    """Delete one object or file; a missing one is not an error."""
    loc = parse_uri(uri)
    if not loc.is_s3:
        loc.path.unlink(missing_ok=True)
        return
    _with_retries("delete", loc, lambda: s3_client().remove_object(loc.bucket, loc.key))


def cache_root() -> Path:
    """``$LLARAPP_CACHE``, by default the temp folder: downloads and conversions."""
    return Path(os.environ.get("LLARAPP_CACHE", tempfile.gettempdir()))


def cache_folder(uri: str, kind: str) -> Path:
    """Where a downloaded copy of ``uri`` lives: :func:`cache_root` / ``kind`` / a digest
    of the URI."""
    digest = hashlib.sha256(str(uri).encode()).hexdigest()[:16]
    return cache_root() / kind / digest


def download_dir(uri: str, local_dir: str | os.PathLike[str]) -> Path:
    """Copy every object below ``uri`` into ``local_dir`` and return it."""
    loc = parse_uri(uri)
    target = Path(local_dir)
    prefix = loc.key.rstrip("/") + "/"
    for item in list_uris(uri):
        relative = parse_uri(item).key[len(prefix):]
        atomic_write_bytes(target / relative, read_bytes(item))
    return target


# ---------------------------------------------------------------- atomic local writes


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a fresh temporary folder that becomes ``final`` only if the block succeeds.

    ``final`` may be a local path or an ``s3://`` prefix (staged locally, then uploaded
    with the manifest last). On any error the temporary folder is removed, so a failed
    stage never leaves a partial artifact behind. One writer at a time: a second process
    publishing the same ``final`` meanwhile gets :class:`~llarapp.locks.LockHeld`.
    """
    from llarapp.locks import exclusive

    with exclusive(final):
        yield from _publish(final)


def _publish(final: str | os.PathLike[str]) -> Iterator[Path]:
    loc = parse_uri(final)
    if loc.is_s3:
        with tempfile.TemporaryDirectory(prefix="llarapp-stage-") as staging:
            yield Path(staging)
            upload_dir(staging, str(loc))
        return
    target = loc.path
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staging, 0o777 & ~umask)  # mkdtemp makes 0700; artifacts are shared
    try:
        yield staging
        if target.exists():
            # Swap: the old artifact is moved aside first, so a crash keeps one of the two.
            trash = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
            os.replace(target, trash)
            os.replace(staging, target)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
