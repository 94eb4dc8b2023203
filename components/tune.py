"""tune: Optuna workers that share one study in an RDB, then the study's summary."""

from kfp.dsl import Dataset, Input, Markdown, Metrics, Output

from components.image import component


@component
def tune_study(storage: str, study_name: str = "llarapp-lightgcn", seed: int = 0,
              tracking_uri: str = "", experiment: str = "llarapp-tune") -> str:
    from llarapp.models.tune import TuneConfig, prepare_study

    cfg = TuneConfig(study_name=study_name, storage=storage, seed=seed,
                     tracking_uri=tracking_uri, experiment=experiment)
    return str(prepare_study(cfg)["study"])


@component
def tune_worker(dataset: Input[Dataset], splits: Input[Dataset], embeddings: Input[Dataset],
               storage: str, worker: int, study_name: str = "llarapp-lightgcn",
               trials: int = 20, epochs: int = 20, seed: int = 0, tracking_uri: str = "",
               experiment: str = "llarapp-tune") -> int:
    from llarapp.data.dataset import Dataset as LoadedDataset
    from llarapp.data.dataset import Split
    from llarapp.models.text_embed import TextEmbeddings
    from llarapp.models.tune import TuneConfig, run_tune

    # Each worker samples with its own seed; Optuna coordinates through the shared storage.
    cfg = TuneConfig(trials=trials, study_name=study_name, storage=storage, epochs=epochs,
                     seed=seed + worker, tracking_uri=tracking_uri, experiment=experiment)
    result = run_tune(cfg, LoadedDataset.load(dataset.path), Split.load(splits.path),
                      TextEmbeddings.load(embeddings.path))
    return int(result["trials"])


@component
def tune_summary(storage: str, study: Output[Dataset], metrics: Output[Metrics],
                summary: Output[Markdown], study_name: str = "llarapp-lightgcn") -> str:
    import json
    from pathlib import Path

    from llarapp.models.tune import TuneConfig, study_summary

    result, table = study_summary(TuneConfig(study_name=study_name, storage=storage))
    Path(study.path).mkdir(parents=True, exist_ok=True)
    table.to_csv(Path(study.path) / "trials.csv", index=False)
    (Path(study.path) / "best.json").write_text(json.dumps(result, indent=2))
    for name in ("trials", "complete", "pruned"):
        metrics.log_metric(name, result[name])
    if "best_value" in result:
        metrics.log_metric("best_value", result["best_value"])
    Path(summary.path).write_text(
        f"# Study {study_name}\n\nBest: {result.get('best_value')} with "
        f"`{json.dumps(result.get('best_params'))}`\n\n{table.to_markdown(index=False)}\n")
    return json.dumps(result.get("best_params", {}))
