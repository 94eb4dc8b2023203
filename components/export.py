"""export: ONNX + QInt8 ranker and text encoder, parity/latency report, serving bundle.

Returns whether int8 parity holds; the deploy gate reads it."""

from kfp.dsl import Dataset, Input, Markdown, Metrics, Model, Output

from components.image import component


@component
def export(model: Input[Model], evaluation: Input[Dataset], dataset: Input[Dataset],
           splits: Input[Dataset], embeddings: Input[Dataset], graph: Input[Model],
           mapper: Input[Model], retrieved: Input[Dataset], bundle: Output[Model],
           metrics: Output[Metrics], report: Output[Markdown], quantization: str = "auto",
           max_delta_hr: float = 0.005, eval_prompts: int = 500, latency_repeats: int = 5,
           tracking_uri: str = "", experiment: str = "llarapp") -> bool:
    import shutil
    from pathlib import Path

    from llarapp.export.config import ExportConfig
    from llarapp.export.stage import run_export
    from llarapp.llara.checkpoint import LlaraArtifact
    from llarapp.llara.examples import Sources
    from llarapp.models.text_embed import TextEmbeddings

    # A named variant is the only one built; auto builds and compares them all.
    variants = ExportConfig().variants if quantization == "auto" else [quantization]
    cfg = ExportConfig(quantization=quantization, variants=variants, max_delta_hr=max_delta_hr,
                       eval_prompts=eval_prompts, latency_repeats=latency_repeats,
                       tracking_uri=tracking_uri, experiment=experiment)
    sources = Sources.load(dataset.path, splits.path, embeddings.path, graph.path, mapper.path,
                           retrieved.path)
    result = run_export(cfg, LlaraArtifact.load(model.path), sources,
                        TextEmbeddings.load(embeddings.path), bundle.path, evaluation.path)
    for name, value in result["summary"].items():
        metrics.log_metric(name.replace("@", "_at_"), value)
    metrics.log_metric("text_encoder_mean_cosine", result["text_encoder"]["mean_cosine"])
    parity = result["int8_parity"]
    metrics.log_metric("int8_val_delta_hr_at_1", parity["val_delta_hr@1"])
    bundle.metadata.update({"model_version": result["model_version"],
                            "quantization": result["chosen"], "int8_parity": parity["passed"]})
    shutil.copyfile(Path(bundle.path) / "report" / "quantization.md", report.path)
    return bool(parity["passed"])
