"""Optuna HPO: three trials on tiny data, sqlite storage, nested MLflow runs."""

import pytest

from llarapp.errors import ConfigError
from llarapp.models.tune import TuneConfig, run_tune, trials_table


@pytest.mark.slow
def test_three_trials_with_nested_mlflow_runs(synthetic_dataset, synthetic_split,
                                              text_embeddings, tmp_path):
    import mlflow

    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = TuneConfig(trials=3, epochs=2, mapper_epochs=2, dims=[16], layers=[1, 2],
                     workdir=str(tmp_path), tracking_uri=tracking, experiment="tune-test")
    result = run_tune(cfg, synthetic_dataset, synthetic_split, text_embeddings)
    assert result["trials"] == 3 and result["complete"] + result["pruned"] == 3
    assert 0 < result["best_value"] <= 1
    assert set(result["best_params"]) == {"dim", "layers", "lr", "reg", "negatives", "lam",
                                          "cold_lambda", "cold_slots"}
    assert (tmp_path / "optuna.db").is_file()
    assert len(trials_table(cfg)) == 3

    mlflow.set_tracking_uri(tracking)
    runs = mlflow.search_runs(experiment_names=["tune-test"])
    children = runs[runs["tags.mlflow.parentRunId"] == result["mlflow_run_id"]]
    assert len(children) == 3
    assert children["params.trial"].astype(int).sort_values().tolist() == [0, 1, 2]

    again = run_tune(cfg.replace(trials=1, track=False), synthetic_dataset, synthetic_split,
                     text_embeddings)
    assert again["trials"] == 4  # the study continues in the same storage


def test_storage_defaults_to_sqlite_in_the_workdir(tmp_path):
    assert TuneConfig(workdir=str(tmp_path)).storage_url() == f"sqlite:///{tmp_path}/optuna.db"
    url = "postgresql://optuna@db/optuna"
    assert TuneConfig(storage=url).storage_url() == url


@pytest.mark.parametrize("key, value", [("lr_range", [0.0, 0.1]), ("trials", 0),
                                        ("lambda_range", [2.0, 1.0])])
def test_config_rejects_bad_search_spaces(key, value):
    with pytest.raises(ConfigError, match=key):
        TuneConfig(**{key: value})
