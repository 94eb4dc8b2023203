"""eval_llara: LLaRA against LightGCN and the hybrid on the same candidates, position bias,
reranking; chooses the ranker that export ships."""

from kfp.dsl import Dataset, Input, Markdown, Metrics, Model, Output

from components.image import component


@component
def eval_llara(model: Input[Model], dataset: Input[Dataset], splits: Input[Dataset],
               embeddings: Input[Dataset], graph: Input[Model], mapper: Input[Model],
               retrieved: Input[Dataset], evaluation: Output[Dataset],
               metrics: Output[Metrics], summary: Output[Markdown],
               tracking_uri: str = "", experiment: str = "llarapp"):
    import shutil
    from pathlib import Path

    from llarapp.llara.checkpoint import LlaraArtifact
    from llarapp.llara.eval_llara import LlaraEvalConfig, run_eval_llara
    from llarapp.llara.examples import Sources

    sources = Sources.load(dataset.path, splits.path, embeddings.path, graph.path, mapper.path,
                           retrieved.path)
    result = run_eval_llara(LlaraEvalConfig(tracking_uri=tracking_uri, experiment=experiment),
                            LlaraArtifact.load(model.path), sources, evaluation.path)
    for row in result["candidates"]:
        if row["segment"] in ("all", "cold_target"):
            metrics.log_metric(f"{row['model']}.{row['segment']}.hr_at_1", row["hr@1"])
    for name, value in {**result["position_bias"], **result["rerank"]}.items():
        metrics.log_metric(name.replace("@", "_at_"), value)
    for row in result["rankers"]["table"]:
        metrics.log_metric(f"{row['split']}.{row['ranker']}.ndcg_at_10", row["ndcg@10"])
    evaluation.metadata["ranker"] = result["rankers"]["ranker"]
    shutil.copyfile(Path(evaluation.path) / "metrics.md", summary.path)
