import pytest
from typer.testing import CliRunner

from llarapp.cli import app

runner = CliRunner()


def test_help_lists_every_stage():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("synth", "ingest", "split", "baselines", "evaluate", "pipeline",
                    "text-embed", "lightgcn", "cold-mapper", "retrieve", "tune",
                    "register", "deploy", "registry"):
        assert command in result.output


def test_show_config_applies_overrides():
    result = runner.invoke(app, ["split", "-o", "x", "-d", "y", "--set", "seed=5",
                                 "--show-config"])
    assert result.exit_code == 0 and "seed: 5" in result.output


def test_unknown_override_is_a_clean_error():
    result = runner.invoke(app, ["synth", "-o", "x", "--set", "playlist=3"])
    assert result.exit_code == 2
    assert "unknown key 'playlist'" in result.output and "num_playlists" in result.output


def test_stages_chain_through_the_cli(tmp_path):
    steps = [
        ["synth", "-o", f"{tmp_path}/slices", "--playlists", "200", "--seed", "1"],
        ["ingest", "-i", f"{tmp_path}/slices", "-o", f"{tmp_path}/dataset"],
        ["split", "-d", f"{tmp_path}/dataset", "-o", f"{tmp_path}/split"],
        ["baselines", "-d", f"{tmp_path}/dataset", "--splits", f"{tmp_path}/split",
         "-o", f"{tmp_path}/recs"],
        ["evaluate", "-d", f"{tmp_path}/dataset", "--splits", f"{tmp_path}/split",
         "-r", f"{tmp_path}/recs", "-o", f"{tmp_path}/eval", "--set", "track=false",
         "--set", "gate_model="],  # baselines only: the gate takes the best of them
    ]
    for step in steps:
        result = runner.invoke(app, step)
        assert result.exit_code == 0, (step, result.output)
    assert (tmp_path / "eval" / "metrics.json").is_file()


@pytest.mark.parametrize("args, message", [
    (["ingest", "-i", "/definitely/not/here", "-o", "out"], "does not exist"),
    (["split", "-d", "/definitely/not/here", "-o", "out"], "has no manifest.json"),
])
def test_bad_inputs_exit_2_with_a_message(args, message, tmp_path):
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and message in result.output


def test_model_stages_chain_through_the_cli(synthetic_dataset, synthetic_split,
                                            text_embeddings, tmp_path):
    data = ["-d", str(synthetic_dataset.folder), "--splits", str(synthetic_split.folder)]
    text = ["--embeddings", str(text_embeddings.folder)]
    steps = [
        ["lightgcn", *data, "-o", f"{tmp_path}/graph", "--set", "epochs=1",
         "--set", "dim=16", "--set", "device=cpu"],
        ["cold-mapper", *data, *text, "--graph", f"{tmp_path}/graph", "-o",
         f"{tmp_path}/mapper", "--set", "epochs=1"],
        ["retrieve", *data, *text, "--graph", f"{tmp_path}/graph", "--mapper",
         f"{tmp_path}/mapper", "-o", f"{tmp_path}/recs", "--set", "lambdas=0,1"],
    ]
    for step in steps:
        result = runner.invoke(app, step)
        assert result.exit_code == 0, (step, result.output)
    assert "title_only: λ =" in result.output


def test_missing_upstream_artifact_is_a_clean_error(synthetic_dataset, tmp_path):
    result = runner.invoke(app, ["lightgcn", "-d", str(synthetic_dataset.folder),
                                 "--splits", str(tmp_path), "-o", f"{tmp_path}/graph"])
    output = " ".join(result.output.split())  # rich wraps long lines
    assert result.exit_code == 2 and "not a finished llarapp artifact" in output
