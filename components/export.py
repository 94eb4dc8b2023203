"""export: ONNX + QInt8 ranker and text encoder, parity/latency report, serving bundle."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Markdown, Metrics, Model, Output

from components.image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def export(model: Input[Model], evaluation: Input[Dataset], dataset: Input[Dataset],
           splits: Input[Dataset], embeddings: Input[Dataset], graph: Input[Model],
           mapper: Input[Model], retrieved: Input[Dataset], bundle: Output[Model],
           metrics: Output[Metrics], report: Output[Markdown], quantization: str = "auto",
           eval_prompts: int = 500, latency_repeats: int = 10, tracking_uri: str = "",
           experiment: str = "llarapp"):
    import shutil
    from pathlib import Path

    from llarapp.export.bundle import run_export
    from llarapp.export.config import ExportConfig
    from llarapp.llara.artifact import LlaraArtifact
    from llarapp.llara.examples import Sources
    from llarapp.models.text_embed import TextEmbeddings

    cfg = ExportConfig(quantization=quantization, eval_prompts=eval_prompts,
                       latency_repeats=latency_repeats, tracking_uri=tracking_uri,
                       experiment=experiment)
    sources = Sources.load(dataset.path, splits.path, embeddings.path, graph.path, mapper.path,
                           retrieved.path)
    result = run_export(cfg, LlaraArtifact.load(model.path), sources,
                        TextEmbeddings.load(embeddings.path), bundle.path, evaluation.path)
    for name, value in result["summary"].items():
        metrics.log_metric(name.replace("@", "_at_"), value)
    metrics.log_metric("text_encoder_mean_cosine", result["text_encoder"]["mean_cosine"])
    bundle.metadata.update({"model_version": result["model_version"],
                            "quantization": result["chosen"]})
    shutil.copyfile(Path(bundle.path) / "report" / "quantization.md", report.path)
