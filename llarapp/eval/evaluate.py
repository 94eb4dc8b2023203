"""The evaluate stage: metrics by model, segment and category; a report; the gate scalar.

Segments: ``all`` targets, ``warm`` targets (tracks with training interactions) and
``cold`` targets (tracks without: the held-out cold set and tracks seen only in
held-out playlists). A playlist counts in a segment when it has a target in it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from llarapp.config import StageConfig, require
from llarapp.data.dataset import Dataset, Split
from llarapp.eval import metrics as M
from llarapp.eval.champion import champion_metrics
from llarapp.eval.report import CATEGORY_ORDER, section_markdown, write_report
from llarapp.eval.sections import Section
from llarapp.eval.served_gate import REFUSED
from llarapp.eval.verdict import verdict, verdict_markdown
from llarapp.manifest import read_manifest, write_json, write_manifest
from llarapp.storage import atomic_dir

SEGMENTS = ("all", "warm", "cold")
RANKED_LIST_LENGTH = 500  # the challenge scores the first 500 recommendations
TABLE_METRICS = ("r_precision", "r_precision_artist", "ndcg", "clicks")
WARM_COLD_TITLE = "Warm targets against cold targets"


@dataclass
class EvaluateConfig(StageConfig):
    split: str = "test"
    ks: list[int] = field(default_factory=lambda: [10, 100])
    gate_metric: str = "ndcg"
    gate_model: str = "hybrid"  # the served retrieval; empty: the best model on gate_metric
    gate_threshold: float = 0.05  # the floor; the pipeline's deploy condition uses the same
    model_name: str = "llarapp"  # the registered model whose champion the candidate faces
    champion_tolerance: float = 0.01  # not worse than the champion, with 95% confidence, by more
    bootstrap_samples: int = 1000
    min_playlists: int = 50  # fewer playlists in a segment: that condition is not judged
    experiment: str = "llarapp"
    run_name: str = "evaluate"
    tracking_uri: str = ""  # empty: MLFLOW_TRACKING_URI, else sqlite in runs/
    track: bool = True

    def validate(self) -> None:
        require(self.split in ("val", "test"), "split must be val or test")
        require(all(k >= 1 for k in self.ks), "ks must be positive")
        valid = {*TABLE_METRICS, *(f"{m}@{k}" for m in ("recall", "ndcg") for k in self.ks)}
        require(self.gate_metric in valid,
                f"gate_metric must be one of {', '.join(sorted(valid))}")


def load_recommendations(folders: list[str | os.PathLike[str]]) -> pd.DataFrame:
    frames = []
    for folder in folders:
        read_manifest(folder, "recommendations")
        frames.append(pd.read_parquet(Path(folder) / "recommendations.parquet"))
    return pd.concat(frames, ignore_index=True)


def per_playlist_metrics(heldout: pd.DataFrame, recs: pd.DataFrame, warm: np.ndarray,
                         artist_of: np.ndarray, ks: tuple[int, ...]) -> pd.DataFrame:
    """One row per (model, segment, playlist) with every metric."""
    num_items = len(warm)
    frames = []
    for model, model_recs in recs.groupby("model", sort=True):
        aligned = heldout.merge(model_recs[["pid", "recs"]], on="pid", how="left")
        matrix = M.recs_matrix(aligned["recs"], RANKED_LIST_LENGTH)
        for segment in SEGMENTS:
            targets = [t if segment == "all" else t[warm[t] == (segment == "warm")]
                       for t in aligned["targets"]]
            values = M.playlist_metrics(matrix, M.relevance_matrix(targets, num_items),
                                        artist_of, ks)
            frame = pd.DataFrame(values)
            frame.insert(0, "pid", aligned["pid"].to_numpy())
            frame.insert(1, "category", aligned["category"].to_numpy())
            frame.insert(0, "segment", segment)
            frame.insert(0, "model", model)
            frames.append(frame[np.fromiter((len(t) > 0 for t in targets), bool)])
    return pd.concat(frames, ignore_index=True)


def summarise(per_playlist: pd.DataFrame) -> pd.DataFrame:
    """Means by model × segment × category, plus an ``all`` category per model × segment."""
    metric_columns = [c for c in per_playlist.columns if c not in ("model", "segment", "pid",
                                                                   "category")]
    keys = ["model", "segment"]
    overall = per_playlist.groupby(keys)[metric_columns].mean().reset_index()
    overall["category"] = "all"
    overall["playlists"] = per_playlist.groupby(keys).size().to_numpy()
    by_category = per_playlist.groupby([*keys, "category"])[metric_columns].mean().reset_index()
    by_category["playlists"] = per_playlist.groupby([*keys, "category"]).size().to_numpy()
    summary = pd.concat([overall, by_category], ignore_index=True)
    return summary[["model", "segment", "category", "playlists", *metric_columns]]


def metrics_table(summary: pd.DataFrame) -> pd.DataFrame:
    """The headline table: per category (all targets) and per segment (all categories)."""
    by_category = summary[summary["segment"] == "all"].copy()
    by_segment = summary[(summary["category"] == "all") & (summary["segment"] != "all")].copy()
    by_segment["category"] = "all (" + by_segment["segment"] + " targets)"
    table = pd.concat([by_category, by_segment], ignore_index=True)
    rank = {name: i for i, name in enumerate(CATEGORY_ORDER)}
    table["rank"] = table["category"].map(rank).fillna(len(rank))  # segment rows go last
    table = table.sort_values(["model", "rank"], kind="stable")
    return table[["model", "category", "playlists", *TABLE_METRICS]].reset_index(drop=True)


def headline_table(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per model: overall, then warm targets, cold targets and title-only playlists."""
    cell = summary.set_index(["model", "segment", "category"])
    pick = {"NDCG": ("all", "all", "ndcg"), "R-prec": ("all", "all", "r_precision"),
            "warm NDCG": ("warm", "all", "ndcg"), "cold Recall@100": ("cold", "all",
                                                                      "recall@100"),
            "title-only NDCG": ("all", "title_only", "ndcg")}
    rows = []
    for model in sorted(summary["model"].unique()):
        rows.append({"model": model, **{name: cell[metric].get((model, segment, category))
                                        for name, (segment, category, metric) in pick.items()
                                        if metric in cell}})
    return pd.DataFrame(rows)


def warm_cold_table(summary: pd.DataFrame, k: int = 100) -> pd.DataFrame:
    """The hybrid's trade-off side by side: per model, accuracy on warm targets next to
    reach on cold ones (all categories)."""
    overall = summary[summary["category"] == "all"].pivot(index="model", columns="segment")
    columns = {("r_precision", "warm"): "warm R-prec", ("ndcg", "warm"): "warm NDCG",
               ("r_precision", "cold"): "cold R-prec", (f"recall@{k}", "cold"): f"cold Recall@{k}",
               ("ndcg", "cold"): "cold NDCG"}
    table = overall.reindex(columns=list(columns)).set_axis(list(columns.values()), axis=1)
    return table.reset_index()


def gate_value(summary: pd.DataFrame, cfg: EvaluateConfig) -> tuple[str, float]:
    overall = summary[(summary["segment"] == "all") & (summary["category"] == "all")]
    overall = overall.set_index("model")[cfg.gate_metric]
    higher_is_better = cfg.gate_metric != "clicks"
    if cfg.gate_model:
        require(cfg.gate_model in overall.index,
                f"gate_model {cfg.gate_model!r} not evaluated; have {', '.join(overall.index)}. "
                "Pass its recommendations, or --set gate_model=<one of them> (empty: the best)")
        model = cfg.gate_model
    else:
        model = overall.idxmax() if higher_is_better else overall.idxmin()
    return model, float(overall[model])


def run_evaluate(cfg: EvaluateConfig, dataset: Dataset, split: Split,
             recommendation_dirs: list[str | os.PathLike[str]],
             output: str | os.PathLike[str],
             sections: Sequence[Section] = (),
             served: dict[str, Any] | None = None, champion: dict[str, Any] | None = None,
             manifest: dict[str, Any] | None = None) -> dict[str, Any]:
    """``sections``: later stages' parts of the report (LLaRA, quantization); ``served``:
    the bundle's :func:`~llarapp.eval.served_gate.served_ranking_gate` verdict and
    ``champion``: :func:`~llarapp.eval.champion.compare_with_champion`'s; either failing
    turns the gate scalar to ``REFUSED``. With the bundle's ``manifest`` the report and
    metrics.md open with the verdict."""
    recs = load_recommendations(recommendation_dirs)
    recs = recs[recs["split"] == cfg.split]
    heldout = split.heldout_for(cfg.split)
    warm = split.warm_mask(dataset.num_tracks)
    per_playlist = per_playlist_metrics(heldout, recs, warm, dataset.artist_of, tuple(cfg.ks))
    summary = summarise(per_playlist)
    table = metrics_table(summary)
    gate_model, floor = gate_value(summary, cfg)
    refused = any(check is not None and not check["passed"] for check in (served, champion))
    gate = REFUSED if refused else floor
    result: dict[str, Any] = {
        "split": cfg.split,
        "gate": {"metric": cfg.gate_metric, "model": gate_model, "value": gate,
                 "floor": floor, "threshold": cfg.gate_threshold,
                 "served_ranking": served, "champion": champion},
        "summary": summary.replace({np.nan: None}).to_dict(orient="records"),
    }
    with atomic_dir(output) as folder:
        per_playlist.to_parquet(folder / "per_playlist.parquet", index=False)
        summary.to_csv(folder / "metrics.csv", index=False)
        headline = headline_table(summary)
        markdown = (f"{headline.to_markdown(index=False, floatfmt='.4f')}\n\n"
                    f"## By category\n\n{table.to_markdown(index=False, floatfmt='.4f')}")
        trade_off = warm_cold_table(summary, max(cfg.ks))
        result["warm_cold"] = trade_off.replace({np.nan: None}).to_dict(orient="records")
        sections = [Section(WARM_COLD_TITLE, trade_off), *sections]
        extra = "".join(f"\n{section_markdown(s)}" for s in sections)
        opening = ""
        if manifest is not None:
            result["verdict"] = verdict(result["gate"], cfg.gate_threshold, manifest)
            opening = verdict_markdown(result["verdict"], (champion or {}).get("candidate", {}))
        (folder / "metrics.md").write_text(
            f"{opening}\n# Metrics ({cfg.split} split)\n\n{markdown}\n{extra}")
        write_report(folder / "report.html", summary, table, cfg.split, sections, opening,
                     headline)
        if cfg.track:
            from llarapp.tracking import log_run

            flat = {f"{r['model']}.{r['segment']}.{r['category']}.{m}": r[m]
                    for r in result["summary"] for m in TABLE_METRICS if r[m] is not None}
            result["mlflow"] = log_run(
                experiment=cfg.experiment, run_name=cfg.run_name,
                params={**{f"split.{k}": v for k, v in split.manifest["config"].items()},
                        "dataset_hash": dataset.manifest["content_hash"],
                        "eval_split": cfg.split},
                metrics={**flat, "gate": gate, **champion_metrics(champion)},
                artifacts=[folder / "metrics.csv", folder / "metrics.md",
                           folder / "report.html"],
                tags={"stage": "evaluate", "gate_model": gate_model,
                      **({"verdict": "deploy" if result["verdict"]["deploy"] else "hold"}
                         if "verdict" in result else {})},
                tracking_uri=cfg.tracking_uri or None,
            )
        write_json(folder / "metrics.json", result)
        write_manifest(folder, "evaluation", 1, config=cfg.to_dict(), gate=result["gate"],
                       mlflow=result.get("mlflow"), models=sorted(recs["model"].unique()))
    result["table"] = table
    return result
