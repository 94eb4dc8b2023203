"""evaluate: metrics, the report (retrieval, LLaRA, quantization), the MLflow run and the
scalar the deploy gate reads (-1 when the bundle's served ranking loses to retrieval alone on
test)."""

from kfp.dsl import HTML, Dataset, Input, Markdown, Metrics, Model, Output

from components.image import component


@component
def evaluate(dataset: Input[Dataset], splits: Input[Dataset],
             recommendations: Input[Dataset], retrieved: Input[Dataset],
             llara_evaluation: Input[Dataset], bundle: Input[Model],
             evaluation: Output[Dataset],
             metrics: Output[Metrics], report: Output[HTML], summary: Output[Markdown],
             tracking_uri: str = "", experiment: str = "llarapp",
             gate_metric: str = "ndcg", gate_model: str = "hybrid") -> float:
    import shutil
    from pathlib import Path

    from llarapp.config import require
    from llarapp.data.dataset import Dataset as LoadedDataset
    from llarapp.data.dataset import Split
    from llarapp.eval.evaluate import EvaluateConfig
    from llarapp.eval.evaluate import evaluate as run_evaluate
    from llarapp.eval.sections import llara_section, quantization_section, rankers_section
    from llarapp.eval.served_gate import served_ranking_gate
    from llarapp.serving.bundle import Bundle

    require(gate_metric != "clicks", "the deploy gate passes when the scalar is at least the "
            "threshold, so gate_metric must be higher-is-better (ndcg, r_precision, …)")
    cfg = EvaluateConfig(tracking_uri=tracking_uri, experiment=experiment,
                         gate_metric=gate_metric, gate_model=gate_model,
                         run_name="pipeline-evaluate")
    result = run_evaluate(cfg, LoadedDataset.load(dataset.path), Split.load(splits.path),
                          [recommendations.path, retrieved.path], evaluation.path,
                          sections=[llara_section(llara_evaluation.path),
                                    rankers_section(bundle.path),
                                    quantization_section(bundle.path)],
                          served=served_ranking_gate(Bundle.load(bundle.path).manifest))
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
