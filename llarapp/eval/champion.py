"""The deploy gate's champion question: is the candidate not worse than the model that
serves now, by more than noise?

1. The champion is the registered version that holds ``production``, else ``staging``;
   a first run has none, and the floor alone decides.
2. Both bundles score the candidate's test split with the serving engine (each playlist's
   title and seed tracks, exactly as a request would carry them), so the two are compared
   on the same playlists by the code that serves them.
3. Per playlist: NDCG@10 and R-precision over all targets, Recall@100 over cold targets.
4. A paired bootstrap over playlists gives the 95% interval of candidate − champion. A
   condition passes when its lower end is above −tolerance: "not worse, with 95%
   confidence, by more than ``tolerance``". Fewer than ``min_playlists`` playlists with
   targets in the segment cannot show that (too little power), so such a condition is
   reported as inconclusive and does not block. The candidate's figures get intervals too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from llarapp.data.dataset import Dataset, Split
from llarapp.eval import metrics as M

CHAMPION_ALIASES = ("production", "staging")  # the first one held is the champion
CONDITIONS = (("ndcg@10", "all"), ("r_precision", "all"), ("recall@100", "cold"))
CONFIDENCE = 0.95
LIST_LENGTH = 500  # as evaluate's ranked lists: R-precision may need more than 100


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float

    def as_dict(self) -> dict[str, float | None]:
        return {k: (None if math.isnan(v) else round(v, 6))
                for k, v in (("mean", self.mean), ("low", self.low), ("high", self.high))}


def bootstrap(values: np.ndarray, samples: int, seed: int = 0) -> Interval:
    """Mean and percentile interval of ``values`` resampled over playlists (NaN dropped)."""
    values = np.asarray(values, float)
    values = values[~np.isnan(values)]
    if not len(values):
        return Interval(math.nan, math.nan, math.nan)
    means = values[np.random.default_rng(seed).integers(0, len(values),
                                                        (samples, len(values)))].mean(axis=1)
    tail = (1 - CONFIDENCE) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return Interval(float(values.mean()), float(low), float(high))


def find_champion(model_name: str, tracking_uri: str | None) -> dict[str, str] | None:
    """The version holding the first of :data:`CHAMPION_ALIASES`, or None."""
    from llarapp.registry.aliases import Registry

    registry = Registry(model_name, tracking_uri)
    held = registry.aliases()
    alias = next((a for a in CHAMPION_ALIASES if a in held), None)
    if alias is None:
        return None
    version = registry.version(f"@{alias}")
    return {"alias": alias, "version": str(version.version),
            "model_version": version.tags.get("model_version", ""),
            "storage_uri": version.tags.get("storage_uri", "")}


@dataclass
class HeldOut:
    """The candidate's test playlists as requests, and their targets: built once, scored
    by both bundles."""

    pids: np.ndarray
    playlists: list[Any]  # InputPlaylist: title and seed tracks with their metadata
    relevant: dict[str, Any]  # segment → relevance matrix over the dataset's tracks
    row_of: dict[str, int]  # track URI → dataset row

    @classmethod
    def of(cls, dataset: Dataset, split: Split, which: str = "test") -> HeldOut:
        from llarapp.recommend.playlists import InputPlaylist
        from llarapp.serving.engine import TrackMeta

        heldout, tracks = split.heldout_for(which), dataset.tracks
        albums = tracks["album_name"] if "album_name" in tracks else pd.Series("", tracks.index)

        def meta(i: int) -> TrackMeta:
            return TrackMeta(tracks["track_name"].iat[i], tracks["artist_name"].iat[i],
                             albums.iat[i] or "", tracks["track_uri"].iat[i])

        playlists = [InputPlaylist(int(row.pid), str(row.name or ""),
                                   [meta(i) for i in row.seeds])
                     for row in heldout.itertuples(index=False)]
        warm, n = split.warm_mask(dataset.num_tracks), dataset.num_tracks
        targets = {"all": list(heldout["targets"]),
                   "cold": [t[~warm[t]] for t in heldout["targets"]]}
        return cls(heldout["pid"].to_numpy(), playlists,
                   {segment: M.relevance_matrix(t, n) for segment, t in targets.items()},
                   {uri: i for i, uri in enumerate(tracks["track_uri"])})


def served_metrics(bundle: Any, held: HeldOut) -> pd.DataFrame:
    """One row per held-out playlist: the gate's metrics of what ``bundle`` serves."""
    from llarapp.recommend.batch import recommend_all
    from llarapp.recommend.config import RecommendConfig
    from llarapp.serving.engine import Engine

    responses = recommend_all(Engine(bundle), held.playlists, RecommendConfig(k=LIST_LENGTH))
    recs = M.recs_matrix([[held.row_of.get(r.track_uri, -1) for r in response.recommendations]
                        for response in responses], LIST_LENGTH)
    metric = {"ndcg@10": lambda r: M.ndcg_at_k(recs, r, 10), "r_precision":
              lambda r: M.r_precision(recs, r), "recall@100": lambda r: M.recall_at_k(recs, r, 100)}
    return pd.DataFrame({"pid": held.pids,
                         **{f"{name} {segment}": metric[name](held.relevant[segment])
                            for name, segment in CONDITIONS}})


def compare_with_champion(candidate: Any, dataset: Dataset, split: Split, model_name: str,
                          tracking_uri: str | None, tolerance: float, samples: int,
                          min_playlists: int) -> dict[str, Any]:
    """The champion condition: its verdict, why, and every number behind it."""
    from llarapp.serving.bundle import Bundle

    held = HeldOut.of(dataset, split)
    mine = served_metrics(candidate, held)
    headline = {column: bootstrap(mine[column].to_numpy(), samples).as_dict()
                for column in mine.columns if column != "pid"}
    champion = find_champion(model_name, tracking_uri)
    result: dict[str, Any] = {"champion": champion, "tolerance": tolerance,
                              "confidence": CONFIDENCE, "samples": samples,
                              "playlists": len(mine), "candidate": headline, "conditions": []}
    if champion is None:
        return result | {"passed": True, "why": "no champion (no version holds "
                         f"{' or '.join(CHAMPION_ALIASES)}): the floor alone decides"}
    theirs = served_metrics(Bundle.load(champion["storage_uri"]), held)
    for name, segment in CONDITIONS:
        column = f"{name} {segment}"
        paired = mine[column].to_numpy() - theirs[column].to_numpy()
        difference = bootstrap(paired, samples)
        count = int(np.count_nonzero(~np.isnan(paired)))
        judged = count >= min_playlists
        result["conditions"].append({
            "metric": column, "playlists": count, "candidate": headline[column]["mean"],
            "champion": float(np.nanmean(theirs[column])) if count else None,
            "difference": difference.as_dict(), "judged": judged,
            "passed": not judged or bool(difference.low > -tolerance)})
    failed = [c["metric"] for c in result["conditions"] if not c["passed"]]
    who = f"v{champion['version']} ({champion['alias']})"
    why = (f"worse than {who} beyond the tolerance {tolerance:g} on {', '.join(failed)}"
           if failed else f"not worse than {who} by more than {tolerance:g} "
           f"({CONFIDENCE:.0%} paired bootstrap)")
    return result | {"passed": not failed, "why": why}


def champion_metrics(champion: dict[str, Any] | None) -> dict[str, float]:
    """The comparison's numbers as flat MLflow metrics (``champion.<metric>.<part>``)."""
    out: dict[str, float] = {}
    for name, values in ((champion or {}).get("candidate") or {}).items():
        out |= {f"candidate.{name}.{k}": v for k, v in values.items() if v is not None}
    for condition in (champion or {}).get("conditions", []):
        out |= {f"champion.{condition['metric']}.difference_{k}": v
                for k, v in condition["difference"].items() if v is not None}
        out[f"champion.{condition['metric']}.passed"] = float(condition["passed"])
    return {k.replace(" ", "_").replace("@", "_at_"): v for k, v in out.items()}
