"""evaluate: metrics, report, MLflow run and the scalar the deploy gate reads."""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Markdown, Metrics, Output

from components.image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def evaluate(dataset: Input[Dataset], splits: Input[Dataset],
             recommendations: Input[Dataset], retrieved: Input[Dataset],
             evaluation: Output[Dataset],
             metrics: Output[Metrics], report: Output[HTML], summary: Output[Markdown],
             tracking_uri: str = "", experiment: str = "llarapp",
             gate_metric: str = "ndcg") -> float:
    import shutil
    from pathlib import Path

    from llarapp.data.dataset import Dataset as LoadedDataset
    from llarapp.data.dataset import Split
    from llarapp.eval.evaluate import EvaluateConfig
    from llarapp.eval.evaluate import evaluate as run_evaluate

    cfg = EvaluateConfig(tracking_uri=tracking_uri, experiment=experiment,
                         gate_metric=gate_metric, run_name="pipeline-evaluate")
    result = run_evaluate(cfg, LoadedDataset.load(dataset.path), Split.load(splits.path),
                          [recommendations.path, retrieved.path], evaluation.path)
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
