"""MLflow tracking: a stage's explicit URI does not become the next stage's default."""

from llarapp.tracking import default_tracking_uri, log_run


def test_an_explicit_uri_does_not_leak_into_the_default(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    before = default_tracking_uri(tmp_path / "runs")
    explicit = f"sqlite:///{tmp_path / 'stage' / 'mlflow.db'}"
    logged = log_run(experiment="t", run_name="one", params={"a": 1}, metrics={"m": 1.0},
                     tracking_uri=explicit)
    assert logged["tracking_uri"] == explicit
    assert default_tracking_uri(tmp_path / "runs") == before  # runs/, not the stage's
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///chosen.db")
    log_run(experiment="t", run_name="two", params={}, metrics={}, tracking_uri=explicit)
    assert default_tracking_uri() == "sqlite:///chosen.db"  # the user's own stays
