"""The registered version as an MLflow pyfunc model: load_model().predict and a real
`mlflow models serve` process answer with the engine's own recommendations."""

import os
import signal
import subprocess
import sys

import httpx
import pandas as pd
import pytest

from llarapp.registry.aliases import Registry
from llarapp.registry.register import RegisterConfig, run_register
from llarapp.serving.engine import Engine, Request
from llarapp.serving.launch import ServerProcess

STAGING = "models:/llarapp@staging"


@pytest.fixture(scope="module")
def staged(bundle, tmp_path_factory):
    """The tiny bundle registered, then moved to staging as deploy would."""
    folder = tmp_path_factory.mktemp("pyfunc")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        result = run_register(RegisterConfig(tracking_uri=uri), bundle.folder, folder / "out")
        Registry("llarapp", uri).move("staging", result["version"])
    return uri


@pytest.fixture()
def tracking(staged, monkeypatch):
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", staged)
    mlflow.set_tracking_uri(staged)
    return staged


def playlists(bundle) -> pd.DataFrame:
    seeds = bundle.catalogue["track_uri"].head(3).tolist()
    return pd.DataFrame({"pid": [7, 8], "playlist_name": ["road trip", None],
                         "track_uris": [[], seeds]})


def expected(bundle, frame: pd.DataFrame, k: int) -> list[list[str]]:
    engine = Engine(bundle)
    requests = [Request(name or "", list(uris), k) for name, uris in
                zip(frame["playlist_name"].fillna(""), frame["track_uris"], strict=True)]
    return [[r.track_uri for r in response.recommendations]
            for response in engine.recommend(requests)]


def test_load_model_predict_returns_the_engines_recommendations(bundle, tracking):
    import mlflow

    model = mlflow.pyfunc.load_model(STAGING)
    frame = playlists(bundle)
    out = model.predict(frame, params={"k": 5})
    assert list(out.columns) == ["pid", "rank", "track_uri", "score", "reason"]
    by_pid = [out[out["pid"] == pid].sort_values("rank") for pid in (7, 8)]
    assert [group["rank"].tolist() for group in by_pid] == [[1, 2, 3, 4, 5]] * 2
    assert [g["track_uri"].tolist() for g in by_pid] == expected(bundle, frame, 5)
    assert not set(by_pid[1]["track_uri"]) & set(frame["track_uris"][1])  # seeds excluded
    assert all(isinstance(reason, str) and reason for reason in out["reason"])
    default = model.predict(frame.head(1))
    assert len(default) == 10  # the server's default k
    assert model.metadata.get_input_schema().input_names() == ["pid", "playlist_name",
                                                               "track_uris"]


@pytest.mark.parametrize(("row", "field"), [
    ({"pid": 1}, "rows.0"),  # no title and no tracks: nothing to recommend from
    ({"pid": 1, "track_uris": ["x" * 200]}, "rows.0.track_uris.0"),
    ({"pid": 1, "track_uris": ["spotify:track:a"] * 501}, "rows.0.track_uris"),
])
def test_a_bad_row_is_an_invalid_parameter_naming_its_field(tracking, row, field):
    import mlflow
    from mlflow.exceptions import MlflowException

    model = mlflow.pyfunc.load_model(STAGING)
    with pytest.raises(MlflowException) as caught:
        model.predict(pd.DataFrame([row]))
    assert caught.value.error_code == "INVALID_PARAMETER_VALUE"
    assert str(caught.value.message).startswith(field)


class MlflowServe(ServerProcess):
    """`mlflow models serve -m URI --env-manager local`, stopped with its child workers."""

    def __init__(self, model_uri: str, tracking_uri: str):
        # MLflow starts `uvicorn` by name: the environment's bin folder goes on PATH, as in
        # an activated venv.
        path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
        super().__init__(model_uri, env={"MLFLOW_TRACKING_URI": tracking_uri, "PATH": path})
        self.command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri,
                        "--env-manager", "local", "-h", "127.0.0.1", "-p", str(self.port)]

    def start(self) -> "MlflowServe":
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT,
                                            env=self.env, start_new_session=True)
        return self

    def wait_ready(self, timeout: float = 180) -> None:
        self.wait_until(lambda: self.status("/ping") == 200, timeout, "healthy")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=60)


@pytest.mark.slow
def test_mlflow_models_serve_answers_invocations(bundle, tracking):
    frame = playlists(bundle)
    with MlflowServe(STAGING, tracking) as server:
        body = {"dataframe_split": frame.to_dict(orient="split", index=False),
                "params": {"k": 4}}
        answer = httpx.post(f"{server.url}/invocations", json=body, timeout=60)
        assert answer.status_code == 200, answer.text
        rows = pd.DataFrame(answer.json()["predictions"])
        assert [rows[rows["pid"] == pid]["track_uri"].tolist() for pid in (7, 8)] == expected(
            bundle, frame, 4)
        bad = httpx.post(f"{server.url}/invocations",
                         json={"dataframe_records": [{"pid": 1}]}, timeout=60)
        assert bad.status_code == 400 and "rows.0" in bad.text
