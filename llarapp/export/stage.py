"""Assemble the serving bundle (layout in :mod:`llarapp.serving.bundle`) and run the stage."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from llarapp.errors import ArtifactError
from llarapp.export.config import ExportConfig
from llarapp.export.exporter import Exporter, text_parity
from llarapp.export.ranker import DYNAMIC_AXES, INPUTS, OUTPUT
from llarapp.export.report import choose_variant, int8_parity, write_report
from llarapp.llara.checkpoint import LlaraArtifact
from llarapp.llara.examples import Sources
from llarapp.models.text_embed import TextEmbeddings
from llarapp.rerank.lambdamart import MODEL_FILE
from llarapp.serving import bundle as B
from llarapp.serving.bundle_manifest import write_bundle_manifest
from llarapp.serving.drift import REFERENCE_FILE, Reference
from llarapp.serving.index import build_index, calibrate_widths
from llarapp.storage import atomic_dir


def copy_assets(folder: Path, sources: Sources, exporter: Exporter) -> None:
    """Catalogue, item vectors and the fold-in / cold-mapper weights, all numpy."""
    (folder / "vectors").mkdir()
    (folder / "weights").mkdir()
    shutil.copy(sources.mapper.folder / "catalogue.parquet", folder / B.CATALOGUE)
    np.save(folder / "vectors/item_graph.npy", sources.item_vectors)
    np.save(folder / "vectors/item_text.npy", sources.text.items)
    np.save(folder / "vectors/lightgcn_items.npy", sources.graph.items)
    ranker = exporter.exportable.ranker
    if not ranker.slot_context:  # with slot context the projection depends on the playlist
        import torch

        with torch.no_grad():
            vectors = torch.from_numpy(sources.item_vectors)
            np.save(folder / "vectors/projected.npy",
                    ranker.project(vectors, torch.zeros_like(vectors)).numpy())
    np.save(folder / "weights/fold_in_weights.npy", sources.graph.fold_in_weights)
    np.save(folder / "weights/item_degree.npy", sources.graph.item_degree)
    for name in ("item_mapper.npz", "title_mapper.npz", "title_index.npy", "title_targets.npy"):
        shutil.copy(sources.mapper.folder / name, folder / "weights" / name)


def fit_drift_reference(folder: Path, manifest: dict[str, Any], sources: Sources,
                        size: int, threads: int | None) -> Reference:
    """The drift reference: features of validation playlists as the server computes them,
    through an engine on the bundle being written."""
    from llarapp.online.replay import replay_stream
    from llarapp.serving.engine import Engine, Request

    engine = Engine(B.Bundle(folder, manifest), threads=threads)
    replays = replay_stream(sources.dataset, sources.split, "val", limit=size)
    requests = [Request(r.instance["playlist_name"], r.instance["track_uris"]) for r in replays]
    rows = engine.drift_features(requests)
    return Reference.fit(rows, source=f"{len(rows)} validation playlists")


def llara_metrics(evaluation: str | os.PathLike[str] | None) -> dict[str, Any]:
    if evaluation is None:
        return {}
    result = json.loads((Path(evaluation) / "metrics.json").read_text())
    rows = {f"{r['model']}.{r['segment']}.hr@1": r["hr@1"] for r in result["candidates"]}
    rankers = {f"{r['split']}.{r['ranker']}.{m}": r[m]
               for r in result.get("rankers", {}).get("table", [])
               for m in r if m not in ("split", "ranker", "playlists")}
    return rows | result.get("rerank", {}) | rankers


def ranker_choice(evaluation: str | os.PathLike[str] | None) -> dict[str, Any]:
    """The ranker eval-llara chose, and why; LLaRA when there is no evaluation."""
    if evaluation is None:
        return {"kind": "llara", "why": "exported without an eval-llara artifact"}
    rankers = json.loads((Path(evaluation) / "metrics.json").read_text()).get("rankers")
    if not rankers:
        raise ArtifactError(f"{evaluation} has no ranker choice; re-run eval-llara with this "
                            "version")
    return {"kind": rankers["ranker"], "why": rankers["why"], "table": rankers["table"]}


def copy_ranker(folder: Path, kind: str, exporter: Exporter, sources: Sources,
                evaluation: str | os.PathLike[str] | None, fp32: Path, int8: Path) -> None:
    """Only the shipped ranker's files."""
    if kind == "retrieval":
        return
    (folder / "rerank").mkdir()
    sources.catalogue_features.save(folder / "rerank")
    if kind == "llara":
        shutil.copy(fp32, folder / B.RANKER["fp32"])
        shutil.copy(int8, folder / B.RANKER["int8"])
        exporter.backbone.tokenizer.save_pretrained(folder / "tokenizer")
    else:
        shutil.copy(Path(evaluation) / MODEL_FILE, folder / "rerank" / MODEL_FILE)


def index_calibration(sources: Sources, n: int):
    """Calibrates a built index's search widths on the validation playlists, queried as
    the engine queries them (seeds and title); nothing runs unless an index is built."""
    from llarapp.models.hybrid import params_for
    from llarapp.models.recommendations import seed_matrix
    from llarapp.models.retrieve import query_types

    def calibrate(index):
        heldout = sources.split.heldout_for("val")
        if heldout.empty:
            raise ArtifactError("the split has no validation playlists to calibrate the "
                                "retrieval index on; re-run split with validation playlists, "
                                "or raise index_min_tracks above the catalogue size")
        queries = sources.scorer.queries(seed_matrix(heldout["seeds"], sources.num_items),
                                         sources.text.titles(heldout["pid"].to_numpy()))
        kinds = query_types(heldout).tolist()
        return calibrate_widths(index, sources.scorer, queries,
                                params_for(sources.hybrid_params, kinds), kinds, n)

    return calibrate


def run_export(cfg: ExportConfig, model: LlaraArtifact, sources: Sources, text: TextEmbeddings,
               output: str | os.PathLike[str],
               evaluation: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="llarapp-export-") as tmp, \
            atomic_dir(output) as folder:
        work = Path(tmp)
        exporter = Exporter(cfg, model, sources, work)
        fp32, parity = exporter.export_fp32()
        rows, paths = exporter.quantized(fp32)
        table = pd.DataFrame(rows)
        chosen, why = choose_variant(table, cfg.quantization, cfg.max_delta_hr)
        shipped = ranker_choice(evaluation)
        parity_gate = int8_parity(table, chosen, cfg.max_delta_hr)
        parity_gate["shipped"] = shipped["kind"] == "llara"
        if not parity_gate["shipped"]:  # no quantized ranker is served: nothing to hold
            parity_gate["passed"] = True
        text_int8, text_check = text_parity(cfg, text, sources, work, exporter.threads)

        copy_ranker(folder, shipped["kind"], exporter, sources, evaluation, fp32, paths[chosen])
        shutil.copy(text_int8, folder / B.TEXT_ENCODER)
        shutil.copytree(work / "tokenizer", folder / "text_tokenizer")
        copy_assets(folder, sources, exporter)
        index = build_index(folder, cfg.index_min_tracks,
                            index_calibration(sources, model.config.num_candidates))
        report = write_report(folder / "report", table, chosen, why,
                              {"text_encoder": text_check, "ranker_parity": parity,
                               "int8_parity": parity_gate,
                               "providers": cfg.providers,
                               "threads": exporter.threads or os.cpu_count()})
        trained, mapper_cfg = model.config, sources.mapper.manifest["config"]
        serving = dict(
            ranker={"kind": shipped["kind"], "why": shipped["why"],
                    "selection": shipped.get("table", []), "inputs": list(INPUTS),
                    "output": OUTPUT, "opset": cfg.opset,
                    "dynamic_axes": DYNAMIC_AXES, "graph_dim": int(sources.item_vectors.shape[1]),
                    "num_candidates": trained.num_candidates, "history_len": trained.history_len,
                    "item_tokens": trained.item_tokens, "playlist_slot": trained.playlist_slot,
                    "max_title_tokens": exporter.builder.max_title_tokens,
                    "pad_id": exporter.pad_id, "slot_context": trained.slot_context,
                    "candidate_features": trained.candidate_features,
                    "backbone": trained.backbone, "parity_max_abs_diff": parity},
            text_encoder={"encoder": text.manifest["encoder"], "dim": text.dim,
                          "max_length": text.manifest["config"]["max_length"],
                          "pooling": text.manifest["pooling"], "parity": text_check},
            retrieval={"hybrid_params": sources.hybrid_params,
                       "title_weight": float(sources.scorer.title_weight),
                       "title_query": mapper_cfg["title_query"],
                       "title_neighbours": mapper_cfg["title_neighbours"],
                       "title_temperature": mapper_cfg["title_temperature"],
                       "index": index})
        reference = fit_drift_reference(folder, serving, sources, cfg.drift_reference_size,
                                        exporter.threads)
        reference.save(folder / REFERENCE_FILE)
        files = B.file_table(folder)
        created = dt.datetime.now(dt.UTC)
        # what is served, not report/ (its latencies differ run to run): the same model
        # trained twice gets the same digest
        served = {name: entry for name, entry in files.items() if not name.startswith("report/")}
        digest = hashlib.sha256(json.dumps(served, sort_keys=True).encode()).hexdigest()
        version = cfg.model_version or f"{shipped['kind']}-{created:%Y%m%d-%H%M%S}-{digest[:8]}"
        write_bundle_manifest(
            folder, model_version=version, config=cfg.to_dict(),
            sources={"llara": str(model.folder), "llara_mlflow_run": model.manifest.get("mlflow"),
                     "dataset": str(sources.dataset.folder),
                     "dataset_hash": sources.dataset.manifest.get("content_hash"),
                     "evaluation": str(evaluation) if evaluation else None},
            metrics=llara_metrics(evaluation) | report["summary"],
            quantization={"chosen": chosen, "why": why, "summary": report["summary"],
                          "int8_parity": parity_gate},
            counts={"tracks": int(sources.num_items)}, files=files, **serving)
        if cfg.track:
            from llarapp.tracking import log_run

            report["mlflow"] = log_run(
                experiment=cfg.experiment, run_name=f"export-{version}",
                params=cfg.to_dict() | {"chosen": chosen}, metrics=report["summary"],
                artifacts=[folder / "report" / n for n in ("quantization.md", "quantization.png")],
                tags={"stage": "export", "model_version": version},
                tracking_uri=cfg.tracking_uri or None)
    return report | {"model_version": version, "bundle": str(output)}
