"""The MLflow registry: a version per bundle, aliases that move one step at a time."""

import pytest

from llarapp.errors import ConfigError, RegistryError
from llarapp.registry.aliases import ALIASES, Registry
from llarapp.registry.register import RegisterConfig, load_registration, run_register


@pytest.fixture()
def tracking(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


def registered(bundle, tmp_path, tracking, name="out", **config):
    cfg = RegisterConfig(tracking_uri=tracking, **config)
    return run_register(cfg, bundle.folder, tmp_path / name)


def test_register_creates_a_candidate_version_holding_the_bundle(bundle, tmp_path, tracking):
    import mlflow

    from llarapp.serving.bundle import Bundle

    result = registered(bundle, tmp_path, tracking)
    assert result["version"] == "1" and result["aliases"] == {"candidate": "1"}
    assert load_registration(tmp_path / "out")["model_version"] == bundle.version
    version = Registry("llarapp", tracking).version("@candidate")
    assert version.tags["model_version"] == bundle.version
    assert version.tags["int8_parity"] in ("true", "false")
    mlflow.set_tracking_uri(tracking)
    local = mlflow.artifacts.download_artifacts("models:/llarapp@candidate",
                                                dst_path=str(tmp_path / "download"))
    assert Bundle.load(local).version == bundle.version  # every hash checked
    second = registered(bundle, tmp_path, tracking, name="again")
    assert second["version"] == "2" and second["aliases"] == {"candidate": "2"}


@pytest.mark.parametrize("moves, error", [
    ([("staging", "1")], None),
    ([("staging", "1"), ("canary", "1"), ("production", "1")], None),
    ([("canary", "1")], "does not hold 'staging'"),
    ([("staging", "1"), ("production", "1")], "does not hold 'canary'"),
    ([("staging", "1"), ("staging", "1")], None),  # a repeat is a no-op
    ([("live", "1")], "not one of"),
    ([("staging", "7")], "has no version '7'"),
])
def test_aliases_move_one_step_at_a_time(bundle, tmp_path, tracking, moves, error):
    registered(bundle, tmp_path, tracking)
    registry = Registry("llarapp", tracking)
    *before, (alias, version) = moves
    for step in before:
        registry.move(*step)
    if error:
        with pytest.raises((RegistryError, ConfigError), match=error):
            registry.move(alias, version)
        assert registry.aliases().get(alias) != version
    else:
        assert registry.move(alias, version).version == version
        assert registry.aliases()[alias] == version


def test_promotion_records_the_previous_holder(bundle, tmp_path, tracking):
    registered(bundle, tmp_path, tracking, name="v1")
    registry = Registry("llarapp", tracking)
    for alias in ALIASES[1:]:
        registry.move(alias, "1")
    registered(bundle, tmp_path, tracking, name="v2")
    for alias in ALIASES[1:]:
        move = registry.move(alias, "2")
        assert move.previous == "1" and move.moved
    model = registry.client.get_registered_model("llarapp")
    assert model.tags["previous.production"] == "1"
    assert {row["version"]: row["aliases"] for row in registry.table()} == {
        "2": "canary,candidate,production,staging", "1": ""}


def test_register_uploads_the_bundle_to_s3(bundle, tmp_path, tracking, s3_env):
    from llarapp.serving.bundle import Bundle

    result = registered(bundle, tmp_path, tracking, bundle_uri=f"s3://{s3_env}/bundles")
    assert result["storage_uri"] == f"s3://{s3_env}/bundles/{bundle.version}"
    assert result["uploaded"]
    assert Bundle.load(result["storage_uri"]).version == bundle.version
    assert Registry("llarapp", tracking).version("1").tags["storage_uri"] == \
        result["storage_uri"]


def test_register_refuses_a_changed_bundle(bundle, tmp_path, tracking):
    import shutil

    from llarapp.errors import BundleError

    copy = tmp_path / "bundle"
    shutil.copytree(bundle.folder, copy)
    (copy / "catalogue.parquet").write_bytes(b"not parquet")
    with pytest.raises(BundleError, match="catalogue.parquet"):
        run_register(RegisterConfig(tracking_uri=tracking), copy, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert Registry("llarapp", tracking).aliases() == {}


@pytest.mark.parametrize("values, message", [
    ({"bundle_uri": "gs://bucket/x"}, "s3:// prefix"),
    ({"model_name": " "}, "must not be empty"),
    ({"track": False}, "needs MLflow"),
])
def test_register_config_is_validated(values, message):
    with pytest.raises(ConfigError, match=message):
        RegisterConfig(**values)


def test_registry_cli_lists_and_promotes(bundle, tmp_path, tracking):
    from typer.testing import CliRunner

    from llarapp.cli import app

    registered(bundle, tmp_path, tracking)
    runner = CliRunner()
    refused = runner.invoke(app, ["registry", "promote", "1", "--alias", "canary"])
    assert refused.exit_code == 2 and "does not hold 'staging'" in " ".join(
        refused.output.split())  # the console wraps long lines
    moved = runner.invoke(app, ["registry", "promote", "@candidate", "--alias", "staging"])
    assert moved.exit_code == 0 and "staging: None → 1" in moved.output
    listed = runner.invoke(app, ["registry", "list"])
    assert listed.exit_code == 0 and "candidate,staging" in listed.output
    assert bundle.version in listed.output
