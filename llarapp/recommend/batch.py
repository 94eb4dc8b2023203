"""Score a file of playlists with a serving bundle, offline.

1. Load the bundle (a folder, ``s3://`` prefix, or ``models:/<name>@<alias>`` from the
   MLflow registry) into the server's :class:`~llarapp.serving.engine.Engine`.
2. Send the playlists through it ``batch_size`` at a time, as the server's batcher would:
   same retrieval, cold-start paths, ranker and reasons.
3. Write Parquet (pid, rank, track_uri, score, reason) or the challenge CSV, atomically.
4. With held-out targets, score R-precision, NDCG and clicks with :mod:`llarapp.eval.metrics`
   (targets the catalogue lacks count as relevant and can never be hit).
"""

from __future__ import annotations

import io
import time
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from llarapp.errors import DataValidationError
from llarapp.eval import metrics as M
from llarapp.recommend.challenge import check_submission, submission_text
from llarapp.recommend.config import RecommendConfig
from llarapp.recommend.playlists import InputPlaylist, read_playlists
from llarapp.serving.bundle import Bundle
from llarapp.serving.engine import Engine, Observer, Response
from llarapp.storage import write_bytes

COLUMNS = ["pid", "rank", "track_uri", "score", "reason"]


def load_bundle(uri: str) -> Bundle:
    if uri.startswith("models:/"):
        import mlflow

        return Bundle.load(mlflow.artifacts.download_artifacts(artifact_uri=uri))
    return Bundle.load(uri)


def recommend_all(engine: Engine, playlists: list[InputPlaylist], cfg: RecommendConfig,
                  observe: Observer | None = None) -> list[Response]:
    """Responses in playlist order; ``observe(stage, seconds)`` as for Engine.recommend."""
    responses: list[Response] = []
    with tqdm(total=len(playlists), desc="recommend", unit="playlist") as progress:
        for start in range(0, len(playlists), cfg.batch_size):
            chunk = playlists[start:start + cfg.batch_size]
            responses += engine.recommend([p.request(cfg.k) for p in chunk], observe)
            progress.update(len(chunk))
    return responses


def as_table(playlists: list[InputPlaylist], responses: list[Response]) -> pd.DataFrame:
    rows = [(p.pid, rank, r.track_uri, r.score, r.reason)
            for p, response in zip(playlists, responses, strict=True)
            for rank, r in enumerate(response.recommendations, start=1)]
    return pd.DataFrame(rows, columns=COLUMNS)


def holdout_metrics(engine: Engine, playlists: list[InputPlaylist], responses: list[Response]
                    ) -> dict[str, float]:
    """Means over playlists with targets: R-precision, NDCG and clicks as ``evaluate``."""
    rows = engine.row_of
    extra: dict[str, int] = {}
    targets, recs = [], []
    for playlist, response in zip(playlists, responses, strict=True):
        if not playlist.targets:
            continue
        targets.append(np.array([rows[u] if u in rows else
                                 extra.setdefault(u, len(rows) + len(extra))
                                 for u in playlist.targets], np.int64))
        recs.append([rows[r.track_uri] for r in response.recommendations])
    if not targets:
        return {}
    width = max(len(r) for r in recs)
    matrix = np.full((len(recs), width), -1, np.int64)
    for i, values in enumerate(recs):
        matrix[i, :len(values)] = values
    relevant = M.relevance_matrix(targets, len(rows) + len(extra))
    return {"playlists": len(targets),
            "r_precision": float(np.nanmean(M.r_precision(matrix, relevant))),
            "ndcg": float(np.nanmean(M.challenge_ndcg(matrix, relevant))),
            "clicks": float(np.nanmean(M.clicks(matrix, relevant)))}


def run_recommend(cfg: RecommendConfig, bundle_uri: str, input_uri: str, output: str
                  ) -> dict[str, Any]:
    bundle = load_bundle(bundle_uri)
    engine = Engine(bundle, cfg.precision)
    playlists = read_playlists(input_uri, cfg.holdout_last)
    started = time.perf_counter()
    responses = recommend_all(engine, playlists, cfg)
    seconds = time.perf_counter() - started
    if cfg.format == "challenge":
        text = submission_text(cfg.team_info, [(p.pid, [r.track_uri for r in x.recommendations])
                                               for p, x in zip(playlists, responses, strict=True)])
        faults = check_submission(text, playlists)
        if faults:  # e.g. a catalogue too small for 500 unseen tracks
            raise DataValidationError("the submission would break the challenge's rules: "
                                      + "; ".join(faults), file=output,
                                      fix="use a bundle whose catalogue has 500 tracks beyond "
                                      "every playlist's seeds")
        write_bytes(output, text.encode())
    else:
        buffer = io.BytesIO()
        as_table(playlists, responses).to_parquet(buffer, index=False)
        write_bytes(output, buffer.getvalue())
    return {"playlists": len(playlists), "seconds": round(seconds, 2),
            "playlists_per_s": round(len(playlists) / max(seconds, 1e-9), 1),
            "model_version": bundle.version, "output": output,
            "cold_start": pd.Series([r.cold_start for r in responses]).value_counts().to_dict(),
            "metrics": holdout_metrics(engine, playlists, responses)}
