"""``llarapp pipeline submit``: the real kfp.Client against a fake KFP REST API."""

import pytest
from typer.testing import CliRunner

from llarapp.cli import app
from llarapp.errors import ConfigError
from pipelines.submit import SubmitConfig, submit


def test_submit_creates_a_run_of_the_compiled_pipeline(kfp_api):
    result = submit(SubmitConfig(host=kfp_api.url, experiment="music", enable_caching=False),
                    {"data_uri": "s3://mpd/v1", "gate_threshold": 0.2})
    assert result["run_id"] == "run-1"
    (experiment,) = kfp_api.posted("/experiments")
    assert experiment["display_name"] == "music"
    (run,) = kfp_api.posted("/runs")
    spec = run["pipeline_spec"]["pipeline_spec"]
    assert spec["pipelineInfo"]["name"] == "llarapp-training"
    assert run["runtime_config"]["parameters"] == {"data_uri": "s3://mpd/v1",
                                                   "gate_threshold": 0.2}
    assert run["experiment_id"] == "exp-1"
    # caching off for this run: every task's cache option was rewritten
    assert not any(task.get("cachingOptions", {}).get("enableCache")
                   for task in spec["root"]["dag"]["tasks"].values())
    platform = run["pipeline_spec"]["platform_spec"]["platforms"]["kubernetes"]
    assert platform["deploymentSpec"]["executors"]["exec-llara"]["nodeSelector"]


def test_submit_recurring_creates_a_cron_job(kfp_api):
    result = submit(SubmitConfig(host=kfp_api.url, pipeline="tune", recurring=True,
                                 cron="0 30 2 * * 0"), {"storage": "postgresql://optuna"})
    assert result["recurring_run_id"] == "rec-1"
    (job,) = kfp_api.posted("/recurringruns")
    assert job["trigger"]["cron_schedule"]["cron"] == "0 30 2 * * 0"
    assert job["runtime_config"]["parameters"] == {"storage": "postgresql://optuna"}
    assert job["pipeline_spec"]["pipeline_spec"]["pipelineInfo"]["name"] == "llarapp-tune"


@pytest.mark.parametrize("values, message", [
    ({"host": "ml-pipeline:8888"}, "KFP API URL"),
    ({"host": "http://kfp", "pipeline": "nope"}, "pipeline must be one of"),
    ({"host": "http://kfp", "recurring": True, "cron": "0 3 * * *"}, "6 fields"),
])
def test_submit_config_is_validated(values, message):
    with pytest.raises(ConfigError, match=message):
        SubmitConfig(**values)


def test_cli_submit_and_compile(kfp_api, tmp_path):
    runner = CliRunner()
    out = runner.invoke(app, ["pipeline", "submit", "--host", kfp_api.url,
                              "--param", "synth_playlists=100"])
    assert out.exit_code == 0, out.output
    assert kfp_api.posted("/runs")[0]["runtime_config"]["parameters"] == {
        "synth_playlists": 100}
    platform = tmp_path / "platform.yaml"
    platform.write_text("gpu_node_label: gpu=mi100\ncaching: false\n")
    out = runner.invoke(app, ["pipeline", "compile", "-o", str(tmp_path / "p.yaml"),
                              "--platform", str(platform)])
    assert out.exit_code == 0, out.output
    assert "gpu: mi100" in (tmp_path / "p.yaml").read_text()
    platform.write_text("gpu_label: x\n")
    out = runner.invoke(app, ["pipeline", "compile", "--platform", str(platform)])
    assert out.exit_code == 2 and "unknown key 'gpu_label'" in out.output
