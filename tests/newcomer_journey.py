"""The newcomer journey's long first step: a fresh clone and ``make run``, started early.

It takes minutes of mostly one core (pip, then kfp.local's task processes) while the rest of
the suite leaves the other core mostly idle, so conftest starts it before the first test
and ``test_newcomer.py`` (ordered last) waits for it.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Tiny settings so the journey fits the suite's budget; every stage still runs its default path.
TINY_RUN = ["synth_playlists=300", "lightgcn_epochs=5", "llara_steps=6",
            "llara_pretrain_steps=3", "export_eval_prompts=48", "export_latency_repeats=1",
            "export_quantization=dynamic", "gate_threshold=0.0"]


def user_env() -> dict[str, str]:
    """The environment of a new user's shell: no outer make, venv or MLflow settings."""
    drop = {"MAKEFLAGS", "MFLAGS", "MAKELEVEL", "VIRTUAL_ENV", "PYTHONPATH",
            "MLFLOW_TRACKING_URI"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    outer_bin = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if p != outer_bin)
    return env


class Journey:
    """`git clone REPO dest && make run ARGS=…` in the background, logged to dest's sibling."""

    def __init__(self, dest: Path):
        self.dest = dest
        self.log_path = dest.parent / "make-run.log"
        make_args = "ARGS=" + " ".join(f"--set {s}" for s in TINY_RUN)
        script = (f"git clone -q {shlex.quote(str(REPO))} {shlex.quote(str(dest))} && "
                  f"cd {shlex.quote(str(dest))} && make run {shlex.quote(make_args)}")
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(["bash", "-c", script], env=user_env(), stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)

    @staticmethod
    def missing_tools() -> list[str]:
        return [tool for tool in ("git", "make") if shutil.which(tool) is None]

    def wait(self, timeout: float) -> Path:
        """The clone once `make run` succeeded; an AssertionError with the log's tail if not."""
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError(
                f"make run took over {timeout:.0f} s:\n{self.log_tail()}") from None
        assert code == 0, f"git clone + make run failed ({code}):\n{self.log_tail()}"
        return self.dest

    def log_tail(self, chars: int = 6000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=60)
