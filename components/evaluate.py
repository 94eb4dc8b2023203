"""evaluate: metrics, the report (the verdict first, then retrieval, LLaRA, quantization),
the MLflow run and the scalar the deploy gate reads (-1 when the bundle's served ranking
loses to retrieval alone on test, or the candidate is worse than the champion)."""

from kfp.dsl import HTML, Dataset, Input, Markdown, Metrics, Model, Output

from components.image import component


@component
def evaluate(dataset: Input[Dataset], splits: Input[Dataset],
             recommendations: Input[Dataset], retrieved: Input[Dataset],
             llara_evaluation: Input[Dataset], bundle: Input[Model],
             evaluation: Output[Dataset],
             metrics: Output[Metrics], report: Output[HTML], summary: Output[Markdown],
             tracking_uri: str = "", experiment: str = "llarapp",
             gate_metric: str = "ndcg", gate_model: str = "hybrid",
             gate_threshold: float = 0.05, model_name: str = "llarapp") -> float:
    import shutil
    from pathlib import Path

    from llarapp.config import require
    from llarapp.data.dataset import Dataset as LoadedDataset
    from llarapp.data.dataset import Split
    from llarapp.eval.champion import compare_with_champion
    from llarapp.eval.evaluate import EvaluateConfig, run_evaluate
    from llarapp.eval.sections import llara_section, quantization_section, rankers_section
    from llarapp.eval.served_gate import served_ranking_gate
    from llarapp.serving.bundle import Bundle

    require(gate_metric != "clicks", "the deploy gate passes when the scalar is at least the "
            "threshold, so gate_metric must be higher-is-better (ndcg, r_precision, …)")
    cfg = EvaluateConfig(tracking_uri=tracking_uri, experiment=experiment,
                         gate_metric=gate_metric, gate_model=gate_model,
                         gate_threshold=gate_threshold, model_name=model_name,
                         run_name="pipeline-evaluate")
    data, split = LoadedDataset.load(dataset.path), Split.load(splits.path)
    candidate = Bundle.load(bundle.path)
    champion = compare_with_champion(candidate, data, split, cfg.model_name,
                                     cfg.tracking_uri or None, cfg.champion_tolerance,
                                     cfg.bootstrap_samples, cfg.min_playlists)
    result = run_evaluate(cfg, data, split, [recommendations.path, retrieved.path],
                          evaluation.path,
                          sections=[llara_section(llara_evaluation.path),
                                    rankers_section(bundle.path),
                                    quantization_section(bundle.path)],
                          served=served_ranking_gate(candidate.manifest), champion=champion,
                          manifest=candidate.manifest)
    for row in result["summary"]:
        if row["segment"] == "all" and row["category"] == "all":
            for name in ("r_precision", "ndcg", "clicks"):
                metrics.log_metric(f"{row['model']}.{name}", row[name])
    metrics.log_metric("gate", result["gate"]["value"])
    shutil.copyfile(Path(evaluation.path) / "report.html", report.path)
    shutil.copyfile(Path(evaluation.path) / "metrics.md", summary.path)
    if "mlflow" in result:
        evaluation.metadata.update(result["mlflow"])
    return float(result["gate"]["value"])
