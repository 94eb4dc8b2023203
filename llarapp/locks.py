"""Exclusive writers: one process at a time publishes a folder or moves an alias.

- A local path is locked with ``flock`` on a sibling file ``.<name>.lock``, removed by
  its holder when done. The kernel drops the lock when its holder exits, however it
  exits, so a crash never leaves a held lock behind.
- An ``s3://`` prefix is locked by creating the object ``<prefix>.lock`` with
  ``If-None-Match: *``: S3 (MinIO, AWS, moto) creates it for exactly one writer and answers
  412 to the others. The holder deletes it when done; a holder that died leaves it, and
  the error says how old it is and how to remove it.
A writer that finds the lock held gets :class:`LockHeld` (at once, or after ``wait_s``):
it never writes into a folder someone else is writing.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from llarapp.errors import ArtifactError, StorageError


class LockHeld(ArtifactError):
    """Another process is writing the same artifact (or moving the same alias)."""


def _owner() -> bytes:
    return json.dumps({"host": socket.gethostname(), "pid": os.getpid(),
                       "since": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}).encode()


@contextlib.contextmanager
def exclusive(target: str | os.PathLike[str], what: str = "written", wait_s: float = 0.0
              ) -> Iterator[None]:
    """Hold ``target``'s lock for the block; :class:`LockHeld` if another process holds
    it for longer than ``wait_s`` (0: do not wait)."""
    from llarapp.storage import parse_uri

    loc = parse_uri(target)
    deadline = time.monotonic() + wait_s
    while True:
        lock = _s3_lock(str(loc)) if loc.is_s3 else _file_lock(loc.path)
        with lock as holder:
            if holder is None:
                yield
                return
        if time.monotonic() >= deadline:
            raise LockHeld(f"{target} is being {what} by another process ({holder}); wait "
                           "for it to finish, or write elsewhere")
        time.sleep(0.05)


@contextlib.contextmanager
def _file_lock(target: Path) -> Iterator[str | None]:
    target.parent.mkdir(parents=True, exist_ok=True)
    path = target.with_name(f".{target.name}.lock")
    for _ in range(10):  # the file we locked may have just been removed by its last holder
        handle = open(path, "a+b")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().decode(errors="replace") or "unknown holder"
            handle.close()
            yield holder
            return
        try:
            if os.fstat(handle.fileno()).st_ino == os.stat(path).st_ino:
                break
        except FileNotFoundError:
            pass
        handle.close()
    else:
        raise ArtifactError(f"cannot lock {path}: it keeps being replaced")
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(_owner())
        handle.flush()
        yield None
    finally:
        path.unlink(missing_ok=True)  # while still held: no one can lock this inode anew
        handle.close()


@contextlib.contextmanager
def _s3_lock(prefix: str) -> Iterator[str | None]:
    import urllib3

    from llarapp.storage import parse_uri, read_bytes, s3_client

    loc = parse_uri(prefix.rstrip("/") + ".lock")
    client = s3_client()
    url = client.presigned_put_object(loc.bucket, loc.key, expires=dt.timedelta(minutes=5))
    wait = float(os.environ.get("LLARAPP_S3_TIMEOUT_S", "60"))
    http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=min(5.0, wait), read=wait))
    try:
        answer = http.request("PUT", url, body=_owner(), headers={"If-None-Match": "*"})
    except urllib3.exceptions.HTTPError as exc:
        raise StorageError(f"cannot take the lock {loc}: {exc}. Check that S3_ENDPOINT is "
                           "reachable") from exc
    if answer.status == 412:
        yield (f"lock {loc} held by {read_bytes(str(loc)).decode(errors='replace')}; if that "
               f"writer is gone, delete the lock: mc rm <alias>/{loc.bucket}/{loc.key}")
        return
    if answer.status != 200:
        raise StorageError(f"cannot take the lock {loc}: S3 answered {answer.status} "
                           f"{answer.data[:200]!r}")
    try:
        yield None
    finally:
        client.remove_object(loc.bucket, loc.key)
