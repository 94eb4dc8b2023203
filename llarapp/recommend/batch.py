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

import collections
import io
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from llarapp.errors import DataValidationError, RegistryError
from llarapp.eval import metrics as M
from llarapp.recommend.challenge import check_submission, submission_text
from llarapp.recommend.config import RecommendConfig
from llarapp.recommend.playlists import InputPlaylist, read_playlists, with_targets
from llarapp.serving.bundle import Bundle
from llarapp.serving.engine import Engine, Observer, Response
from llarapp.storage import parse_uri, write_bytes

COLUMNS = ["pid", "rank", "track_uri", "score", "reason"]
HOLDOUT_COLUMNS = ["pid", "r_precision", "ndcg", "clicks"]


def load_bundle(uri: str) -> Bundle:
    if uri.startswith("models:/"):
        import mlflow

        return Bundle.load(mlflow.artifacts.download_artifacts(artifact_uri=uri))
    return Bundle.load(uri)


def bundle_location(uri: str, tracking_uri: str | None = None) -> str:
    """Where a bundle's files live: ``models:/<name>@<alias>`` (or ``/<version>``) becomes
    the registered version's ``storage_uri``, a local path without ``file://``; a folder or
    s3:// prefix stays as given."""
    if not uri.startswith("models:/"):
        return uri
    from llarapp.registry.aliases import Registry

    name, at, alias = uri.removeprefix("models:/").partition("@")
    name, _, number = name.partition("/") if not at else (name, "", "")
    location = Registry(name, tracking_uri).version(f"@{alias}" if at else number)
    storage = location.tags.get("storage_uri", "")
    if not storage:
        raise RegistryError(f"{uri} has no storage_uri tag; register it with `llarapp register`")
    loc = parse_uri(storage)
    return storage if loc.is_s3 else str(loc.path)


def recommend_all(engine: Engine, playlists: list[InputPlaylist], cfg: RecommendConfig,
                  observe: Observer | None = None, position: int = 0) -> list[Response]:
    """Responses in playlist order; ``observe(stage, seconds)`` as for Engine.recommend;
    ``position``: the progress bar's line (one per worker process)."""
    responses: list[Response] = []
    with tqdm(total=len(playlists), desc="recommend", unit="playlist",
              position=position) as progress:
        for start in range(0, len(playlists), cfg.batch_size):
            chunk = playlists[start:start + cfg.batch_size]
            responses += engine.recommend([p.request(cfg.k) for p in chunk], observe)
            progress.update(len(chunk))
    return responses


def as_table(playlists: list[InputPlaylist], responses: list[Response]) -> pd.DataFrame:
    lists = [r.recommendations for r in responses]
    sizes = [len(recs) for recs in lists]
    ranks = np.concatenate([np.arange(1, n + 1) for n in sizes]) if lists else []
    return pd.DataFrame({
        "pid": np.repeat([p.pid for p in playlists], sizes), "rank": ranks,
        "track_uri": [u for recs in lists for u in recs.uris],
        "score": [s for recs in lists for s in recs.scores],
        "reason": [s for recs in lists for s in recs.reasons]}, columns=COLUMNS)


def holdout_table(engine: Engine, playlists: list[InputPlaylist], responses: list[Response]
                  ) -> pd.DataFrame:
    """One row per playlist with targets: pid, R-precision, NDCG and clicks as ``evaluate``."""
    rows = engine.row_of
    extra: dict[str, int] = {}
    pids, targets, recs = [], [], []
    for playlist, response in zip(playlists, responses, strict=True):
        if not playlist.targets:
            continue
        pids.append(playlist.pid)
        targets.append(np.array([rows[u] if u in rows else
                                 extra.setdefault(u, len(rows) + len(extra))
                                 for u in playlist.targets], np.int64))
        recs.append([rows[uri] for uri in response.recommendations.uris])
    if not targets:
        return pd.DataFrame(columns=HOLDOUT_COLUMNS)
    matrix = M.recs_matrix(recs, max(len(r) for r in recs))
    relevant = M.relevance_matrix(targets, len(rows) + len(extra))
    return pd.DataFrame({"pid": pids, "r_precision": M.r_precision(matrix, relevant),
                         "ndcg": M.challenge_ndcg(matrix, relevant),
                         "clicks": M.clicks(matrix, relevant)})


def holdout_summary(table: pd.DataFrame) -> dict[str, float]:
    """Means over playlists (``{}`` without targets): the same whether or not sharded."""
    if table.empty:
        return {}
    return {"playlists": len(table),
            **{m: float(np.nanmean(table[m])) for m in HOLDOUT_COLUMNS[1:]}}


def write_recommendations(cfg: RecommendConfig, table: pd.DataFrame,
                          playlists: list[InputPlaylist], output: str) -> None:
    """Parquet as is, or the challenge CSV in the playlists' order, checked first."""
    if cfg.format == "parquet":
        buffer = io.BytesIO()
        table.to_parquet(buffer, index=False)
        write_bytes(output, buffer.getvalue())
        return
    lists = table.sort_values(["pid", "rank"]).groupby("pid")["track_uri"].agg(list)
    text = submission_text(cfg.team_info, [(p.pid, lists.get(p.pid, [])) for p in playlists])
    faults = check_submission(text, playlists)
    if faults:  # e.g. a catalogue too small for 500 unseen tracks
        raise DataValidationError("the submission would break the challenge's rules: "
                                  + "; ".join(faults), file=output,
                                  fix="use a bundle whose catalogue has 500 tracks beyond "
                                  "every playlist's seeds")
    write_bytes(output, text.encode())


@dataclass
class Scored:
    """Every playlist of an input scored: its recommendations and held-out metrics."""

    playlists: list[InputPlaylist]
    table: pd.DataFrame  # COLUMNS, one row per recommendation
    holdout: pd.DataFrame  # HOLDOUT_COLUMNS, one row per playlist with targets
    seconds: float
    cold_start: dict[str, int]
    model_version: str
    stages: dict[str, float]  # seconds per engine stage (encode, retrieve, rerank), summed


def score_with(engine: Engine, playlists: list[InputPlaylist], cfg: RecommendConfig,
               position: int = 0) -> Scored:
    stages: collections.Counter[str] = collections.Counter()
    started = time.perf_counter()
    responses = recommend_all(engine, playlists, cfg,
                              lambda stage, seconds: stages.update({stage: seconds}), position)
    seconds = time.perf_counter() - started
    return Scored(playlists, as_table(playlists, responses),
                  holdout_table(engine, playlists, responses), seconds,
                  pd.Series([r.cold_start for r in responses]).value_counts().to_dict(),
                  engine.bundle.version, dict(stages))


def score_playlists(cfg: RecommendConfig, bundle_uri: str, input_uri: str) -> Scored:
    """Every playlist of ``input_uri``, in this process or in ``cfg.processes`` workers."""
    playlists = read_playlists(input_uri, cfg.holdout_last)
    if cfg.targets:
        playlists = with_targets(playlists, cfg.targets)
    if cfg.processes > 1:
        from llarapp.recommend.workers import score_in_processes

        return score_in_processes(cfg, bundle_uri, playlists)
    return score_with(Engine(load_bundle(bundle_uri), cfg.precision), playlists, cfg)


def run_recommend(cfg: RecommendConfig, bundle_uri: str, input_uri: str, output: str
                  ) -> dict[str, Any]:
    scored = score_playlists(cfg, bundle_uri, input_uri)
    write_recommendations(cfg, scored.table, scored.playlists, output)
    n = len(scored.playlists)
    return {"playlists": n, "seconds": round(scored.seconds, 2),
            "playlists_per_s": round(n / max(scored.seconds, 1e-9), 1),
            "model_version": scored.model_version, "output": output,
            "cold_start": scored.cold_start, "metrics": holdout_summary(scored.holdout)}
