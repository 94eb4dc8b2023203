"""Writers that cannot race, with two real processes each time: publishing a folder (local
or S3) is exclusive, so a second writer gets a clear error and the folder is never mixed;
an alias move is compare-and-set, so of two moves from the same state exactly one wins."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from llarapp import storage
from llarapp.locks import LockHeld, exclusive

WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from llarapp.storage import atomic_dir
    target, name, hold = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    with atomic_dir(target) as folder:
        (folder / f"{name}-1.txt").write_text(name)
        hold.with_suffix(".writing").touch()
        while hold.exists():  # the test lets go
            time.sleep(0.05)
        (folder / f"{name}-2.txt").write_text(name)
        (folder / "manifest.json").write_text(name)
""")


def start_writer(target: str, name: str, hold: Path) -> subprocess.Popen:
    hold.touch()
    process = subprocess.Popen([sys.executable, "-c", WRITER, target, name, str(hold)],
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not hold.with_suffix(".writing").exists():
        assert process.poll() is None, process.stderr.read()
        assert time.monotonic() < deadline, "the first writer never started writing"
        time.sleep(0.05)
    return process


def run_writer(target: str, name: str, tmp_path: Path) -> subprocess.CompletedProcess:
    go = tmp_path / f"{name}.go"  # never held: this writer goes straight through
    code = WRITER.replace("while hold.exists()", "while False")
    return subprocess.run([sys.executable, "-c", code, target, name, str(go)],
                          capture_output=True, text=True, timeout=120)


def files(target: str) -> set[str]:
    return {uri.rsplit("/", 1)[-1] for uri in storage.list_uris(target)}


@pytest.fixture(params=["local", "s3"])
def target(request, tmp_path):
    if request.param == "local":
        return str(tmp_path / "artifact")
    bucket = request.getfixturevalue("s3_env")
    return f"s3://{bucket}/bundles/artifact"


def test_a_second_writer_is_refused_and_the_folder_is_never_mixed(target, tmp_path):
    hold = tmp_path / "a.hold"
    first = start_writer(target, "a", hold)
    second = run_writer(target, "b", tmp_path)  # while the first is mid-write
    assert second.returncode != 0
    assert "LockHeld" in second.stderr and "is being written by another process" in \
        second.stderr
    hold.unlink()
    assert first.wait(60) == 0, first.stderr.read()
    assert files(target) == {"a-1.txt", "a-2.txt", "manifest.json"}
    # once the first is done, the second may replace it whole
    again = run_writer(target, "b", tmp_path)
    assert again.returncode == 0, again.stderr
    assert files(target) == {"b-1.txt", "b-2.txt", "manifest.json"}


def test_a_crashed_writer_leaves_no_lock_and_no_artifact(tmp_path):
    target, hold = str(tmp_path / "artifact"), tmp_path / "a.hold"
    first = start_writer(target, "a", hold)
    first.kill()
    first.wait(30)
    assert not Path(target).exists()
    assert run_writer(target, "b", tmp_path).returncode == 0  # the kernel freed the lock
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".lock")] == []


def test_exclusive_waits_when_asked(tmp_path):
    with exclusive(tmp_path / "x"):
        with pytest.raises(LockHeld, match="being written"):
            with exclusive(tmp_path / "x", wait_s=0.2):
                pass


MOVER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from llarapp.registry.aliases import Registry
    uri, version, go = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    registry = Registry("llarapp", uri)
    registry.aliases()  # warm: connect before the start line
    while not go.exists():
        time.sleep(0.005)
    move = registry.move("candidate", version, expected="1")
    print(f"moved {move.previous} -> {move.version}")
""")


def test_two_concurrent_alias_moves_from_the_same_state_one_wins(tmp_path):
    from llarapp.registry.aliases import Registry

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    registry = Registry("llarapp", uri)
    registry.ensure_model()
    for number in ("1", "2", "3"):
        registry.client.create_model_version("llarapp", f"s3://models/v{number}")
    registry.move("candidate", "1")
    go = tmp_path / "go"
    movers = [subprocess.Popen([sys.executable, "-c", MOVER, uri, version, str(go)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONWARNINGS": "ignore"})
              for version in ("2", "3")]
    time.sleep(8)  # both have imported mlflow and wait at the start line
    go.touch()
    outcomes = [(m.wait(120), *m.communicate()) for m in movers]
    winners = [i for i, (code, _, _) in enumerate(outcomes) if code == 0]
    assert len(winners) == 1, outcomes
    loser = outcomes[1 - winners[0]]
    assert "moved meanwhile" in loser[2] and "not 1 as expected" in loser[2]
    assert registry.aliases()["candidate"] == ("2", "3")[winners[0]]
