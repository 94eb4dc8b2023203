"""The GitHub Actions workflows: schema-valid, and wired to what the repository has."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipelines.local_run import PIPELINES

REPO = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((REPO / ".github/workflows").glob("*.yml"))
CHECK = Path(sys.executable).with_name("check-jsonschema")


def load(name: str) -> dict:
    # YAML 1.1 reads the key `on` as True
    return {("on" if k is True else k): v
            for k, v in yaml.safe_load((REPO / ".github/workflows" / name).read_text()).items()}


def validate(paths: list[Path]) -> subprocess.CompletedProcess:
    return subprocess.run([str(CHECK), "--builtin-schema", "vendor.github-workflows",
                           *map(str, paths)], capture_output=True, text=True, timeout=120)


def test_workflows_match_the_github_schema():
    assert {p.name for p in WORKFLOWS} == {"ci.yml", "release.yml"}
    done = validate(WORKFLOWS)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_schema_check_catches_a_broken_workflow(tmp_path):
    broken = load("ci.yml")
    del broken["jobs"]["test"]["runs-on"]
    broken["jobs"]["test"]["timeout-minutes"] = "soon"
    (tmp_path / "broken.yml").write_text(yaml.safe_dump(broken))
    assert validate([tmp_path / "broken.yml"]).returncode != 0


def _steps(workflow: dict) -> list[dict]:
    return [s for job in workflow["jobs"].values() for s in job.get("steps", [])]


def test_every_action_is_pinned():
    for path in WORKFLOWS:
        for step in _steps(load(path.name)):
            if "uses" in step:
                assert re.fullmatch(r"[\w.-]+/[\w.-]+@v\d+", step["uses"]), step["uses"]


def test_ci_runs_make_test_on_pushes_and_pull_requests():
    ci = load("ci.yml")
    assert {"push", "pull_request", "workflow_call"} <= set(ci["on"])
    runs = [s.get("run", "") for s in _steps(ci)]
    assert "bash .ci/run" in runs and "make lint" in runs
    assert "make test" in (REPO / ".ci/run").read_text()


def test_release_order_images_pipeline_and_argocd_deploy():
    release = load("release.yml")
    assert release["on"] == {"push": {"tags": ["v*"]}}
    jobs = release["jobs"]
    assert jobs["test"]["uses"] == "./.github/workflows/ci.yml"
    assert jobs["images"]["needs"] == "test" and jobs["pipeline"]["needs"] == "images"
    assert set(jobs["deploy"]["needs"]) == {"images", "pipeline"}
    for entry in jobs["images"]["strategy"]["matrix"]["include"]:
        assert (REPO / entry["dockerfile"]).is_file(), entry
    assert release["permissions"]["packages"] == "write"


def test_release_commands_exist():
    release = load("release.yml")
    script = "\n".join(s.get("run", "") for s in _steps(release))
    names = {n for group in re.findall(r"for name in ([\w ]+); do", script)
             for n in group.split()}
    assert names == set(PIPELINES)
    compile_line = next(line for line in script.splitlines() if "pipeline compile" in line)
    assert "--pipeline" in shlex.split(compile_line)
    apps = {d["metadata"]["name"] for d in yaml.safe_load_all(
        (REPO / "manifests/argocd/applications.yaml").read_text()) if d}
    synced = set(re.findall(r"argocd app sync (\S+)", script))
    assert synced == {"llarapp-staging", "llarapp-production"} and synced <= apps
    image = re.search(r"image: (ghcr.io/llarapp/llarapp-serving):",
                      (REPO / "manifests/serving/inferenceservice.yaml").read_text())
    assert image and f"--kustomize-image \"{image.group(1)}=" in script


@pytest.mark.parametrize("secret", ["KFP_HOST", "ARGOCD_SERVER", "ARGOCD_AUTH_TOKEN"])
def test_release_reads_its_secrets_from_github(secret):
    assert f"${{{{ secrets.{secret} }}}}" in (REPO / ".github/workflows/release.yml").read_text()
