"""The newcomer journey, as a new user runs it: a fresh clone, ``make run`` (which installs
everything), ``make serve`` in the background, V1 predictions for a title-only and a seeded
playlist, the notebooks on that run, and a kustomize build. Every step must succeed.

The clone and ``make run`` start in the background before the first test (conftest and
``newcomer_journey.py``) and these tests run last. ``make run`` gets tiny settings through
``ARGS`` (300 synthetic playlists, a few training steps) so the journey fits the suite's time
budget; everything else is the default path.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import httpx
import pytest
import yaml
from newcomer_journey import user_env
from notebook_runner import run_notebook

from llarapp.serving.launch import ServerProcess

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def clone(newcomer_journey) -> Path:
    """A fresh clone after `make run` (started in the background by conftest)."""
    if newcomer_journey is None:
        pytest.skip("make and git are needed for the newcomer journey")
    return newcomer_journey.wait(timeout=1800)


@pytest.fixture(scope="module")
def run_dir(clone) -> Path:
    (run,) = (clone / "runs" / "pipeline-root").iterdir()
    return run


def test_make_run_trains_evaluates_exports_and_deploys(clone, run_dir):
    evaluation = run_dir / "evaluate" / "evaluation"
    metrics = json.loads((evaluation / "metrics.json").read_text())
    assert {"popularity", "item_knn", "lightgcn", "text", "hybrid"} <= {
        row["model"] for row in metrics["summary"]}
    assert metrics["gate"]["model"] == "hybrid"
    assert {"synth", "ingest", "split", "baselines", "text-embed", "lightgcn", "cold-mapper",
            "retrieve", "evaluate", "llara", "eval-llara", "export", "register",
            "deploy"} <= {p.name for p in run_dir.iterdir()}
    llara = json.loads((run_dir / "eval-llara" / "evaluation" / "metrics.json").read_text())
    assert {r["model"] for r in llara["candidates"]} == {"llara", "feature_head", "lightgcn",
                                                         "hybrid"}
    assert (run_dir / "llara" / "model" / "adapter" / "adapter_config.json").is_file()
    from llarapp.serving.bundle import Bundle

    bundle = Bundle.load(run_dir / "export" / "bundle")  # verifies every hash
    assert bundle.manifest["quantization"]["chosen"] in ("dynamic", "per_channel", "static")
    assert bundle.manifest["metrics"]["size_ratio"] > 3
    assert "drift_reference.json" in bundle.manifest["files"]
    report = (evaluation / "report.html").read_text()
    assert "LLaRA ranker and ablations" in report and "Quantization parity" in report
    assert report.count("data:image/png;base64") >= 6
    assert "## Quantization parity" in (evaluation / "metrics.md").read_text()
    registration = json.loads((run_dir / "register/registration/manifest.json").read_text())
    assert registration["model_version"] == bundle.version
    assert (clone / "runs" / "mlflow.db").is_file()
    # registered, gate cleared (threshold 0 and parity holds), deployed to staging
    isvc = yaml.safe_load((run_dir / "deploy" / "manifest" / "inferenceservice.yaml").read_text())
    assert isvc["metadata"]["name"] == "llarapp-staging"
    from llarapp.registry.aliases import Registry

    registry = Registry("llarapp", f"sqlite:///{clone / 'runs' / 'mlflow.db'}")
    assert registry.aliases() == {"candidate": "1", "staging": "1"}
    # the console: a line per stage and the verdict, not kfp.local's plumbing
    console = (clone.parent / "make-run.log").read_text()
    lines = console[console.index("LLaRA++ training pipeline (kfp.local)"):].splitlines()
    assert len(lines) <= 100, "\n".join(lines)
    assert any("Verdict: DEPLOY" in line for line in lines)
    assert "executorInput" not in console


class MakeServe(ServerProcess):
    """`make serve PORT=…` in the clone, with ServerProcess's readiness wait and log."""

    def __init__(self, clone: Path):
        super().__init__(clone / "runs")
        self.clone, self.command = clone, ["make", "serve", f"PORT={self.port}"]

    def start(self) -> MakeServe:
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(self.command, cwd=self.clone, env=user_env(),
                                            stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        return self

    def stop(self) -> None:  # make's child is the server: stop the whole process group
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=60)


@pytest.fixture(scope="module")
def served(clone) -> str:
    """`make serve` in the background, as the README says; yields its URL once ready."""
    with MakeServe(clone) as server:
        yield server.url


def test_make_serve_answers_title_only_and_seeded_playlists(served, run_dir):
    version = json.loads((run_dir / "export/bundle/manifest.json").read_text())["model_version"]
    seeds = _catalogue_uris(run_dir)[:5]
    answer = httpx.post(f"{served}/v1/models/llarapp:predict", timeout=120, json={
        "instances": [{"playlist_name": "summer road trip", "k": 10},
                      {"playlist_name": "favourites", "track_uris": seeds, "k": 10}]})
    assert answer.status_code == 200, answer.text
    title_only, seeded = answer.json()["predictions"]
    for prediction in (title_only, seeded):
        assert prediction["model_version"] == version
        assert len(prediction["recommendations"]) == 10
        assert all(r["track_uri"].startswith("spotify:track:") and r["reason"]
                   for r in prediction["recommendations"])
    assert title_only["cold_start"] == "title_only" and seeded["cold_start"] == "none"
    assert not set(seeds) & {r["track_uri"] for r in seeded["recommendations"]}


def _readme_curl_commands() -> list[tuple[str, str]]:
    """Every `curl -s localhost:8080…` command in the READMEs' bash blocks, as written."""
    commands = []
    for readme in ("README.md", "kserve/README.md"):
        for block in re.findall(r"```bash\n(.*?)```", (REPO / readme).read_text(), re.S):
            lines: list[str] = []
            for line in block.splitlines():
                if lines or line.startswith("curl -s localhost:8080"):
                    lines.append(line)
                    if "".join(lines).count("'") % 2 == 0:  # the -d '…' body has closed
                        commands.append((readme, "\n".join(lines)))
                        lines = []
    return commands


def test_the_readme_curl_commands_work_as_written(served):
    if shutil.which("curl") is None:
        pytest.skip("curl is not on PATH")
    commands = _readme_curl_commands()
    assert len(commands) >= 5, commands
    port = served.rsplit(":", 1)[1]
    for readme, command in commands:
        done = subprocess.run(["bash", "-c", command.replace("localhost:8080",
                                                             f"127.0.0.1:{port}")],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{readme}: {command}\n{done.stderr}"
        if "/metrics" in command:
            assert "llarapp_stage_seconds_count" in done.stdout, done.stdout[-2000:]
            continue
        body = json.loads(done.stdout)
        assert "error" not in body, f"{readme}: {command}\n{body}"
        if "/v1/" in command:
            sent = json.loads(command.split("-d '", 1)[1].rstrip("'"))
            assert len(body["predictions"]) == len(sent["instances"])
            assert all(len(p["recommendations"]) == 5 for p in body["predictions"])
        else:
            outputs = {o["name"]: o for o in body["outputs"]}
            assert len(outputs["track_uris"]["data"]) == 5
            assert {"scores", "reasons", "cold_start", "warnings"} <= outputs.keys()


def _catalogue_uris(run_dir: Path) -> list[str]:
    import pandas as pd

    return pd.read_parquet(run_dir / "export/bundle/catalogue.parquet")["track_uri"].tolist()


@pytest.mark.parametrize("name", ["02_model_evaluation", "03_serving_walkthrough"])
def test_notebooks_on_the_run(clone, run_dir, name):
    """The clone's own notebook, on a kernel of the clone's .venv, as a user's Jupyter would."""
    run_notebook(clone / "notebooks" / f"{name}.ipynb", cwd=clone,
                 env={"LLARAPP_RUN": str(run_dir),
                      "LLARAPP_BUNDLE": str(run_dir / "export" / "bundle")},
                 python=clone / ".venv" / "bin" / "python")


def test_kustomize_builds_in_the_clone(clone):
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not on PATH: `kubectl kustomize` cannot build the overlays")
    for overlay in ("staging", "production", "production-gpu"):
        done = subprocess.run(["kubectl", "kustomize", f"kustomize/overlays/{overlay}"],
                              cwd=clone, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        kinds = {d["kind"] for d in yaml.safe_load_all(done.stdout) if d}
        assert "InferenceService" in kinds
