"""``llarapp``: every stage from the command line, for people who do not use KFP.

Each stage takes ``--config FILE.yaml`` and any number of ``--set key=value`` overrides;
``llarapp <stage> --show-config`` prints the effective configuration.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from llarapp.cli_common import (
    ConfigOpt,
    DatasetOpt,
    EmbeddingsOpt,
    GraphOpt,
    MapperOpt,
    OutputOpt,
    RetrievedOpt,
    SetOpt,
    ShowOpt,
    SplitsOpt,
    app,
    console,
    run_stage,
    stage_config,
)


@app.command()
def synth(output: OutputOpt, config: ConfigOpt = None, set_: SetOpt = None,
          show_config: ShowOpt = False,
          playlists: Annotated[int | None, typer.Option(help="Number of playlists.")] = None,
          seed: Annotated[int | None, typer.Option(help="Random seed.")] = None) -> None:
    """Generate synthetic MPD-format slices (the embedded default data)."""
    from llarapp.data.synth import SynthConfig, run_synth

    cfg = stage_config(SynthConfig, config, set_, show_config, num_playlists=playlists, seed=seed)
    manifest = run_stage(lambda: run_synth(cfg, output))
    console.print(f"wrote {manifest['num_playlists']} playlists in "
                  f"{len(manifest['files'])} slices to {output}")


@app.command()
def ingest(output: OutputOpt,
           input_: Annotated[str | None, typer.Option("--input", "-i",
                             help="Folder, file or s3:// prefix of MPD slices.")] = None,
           strict: Annotated[bool | None, typer.Option(
               "--strict/--lenient", help="Stop at the first invalid record.")] = None,
           config: ConfigOpt = None, set_: SetOpt = None, show_config: ShowOpt = False) -> None:
    """Validate and clean MPD slices into Parquet tables."""
    from llarapp.data.ingest import IngestConfig, run_ingest

    cfg = stage_config(IngestConfig, config, set_, show_config, input=input_, strict=strict)
    manifest = run_stage(lambda: run_ingest(cfg, output))
    counts = manifest["counts"]
    console.print(f"ingested {counts['playlists']} playlists, {counts['tracks']} tracks, "
                  f"{counts['interactions']} interactions; {counts['rejected']} rejected "
                  f"-> {output}")


@app.command()
def split(output: OutputOpt,
          dataset: DatasetOpt,
          config: ConfigOpt = None, set_: SetOpt = None, show_config: ShowOpt = False) -> None:
    """Hold out validation/test playlists by category, sample cold tracks."""
    from llarapp.data.dataset import Dataset
    from llarapp.data.split import SplitConfig, run_split

    cfg = stage_config(SplitConfig, config, set_, show_config)
    manifest = run_stage(lambda: run_split(cfg, Dataset.load(dataset), output))
    console.print_json(data=manifest["counts"])


@app.command()
def baselines(output: OutputOpt,
              dataset: DatasetOpt, splits: SplitsOpt,
              config: ConfigOpt = None, set_: SetOpt = None,
              show_config: ShowOpt = False) -> None:
    """Popularity and item-kNN recommendations for the held-out playlists."""
    from llarapp.data.dataset import Dataset, Split
    from llarapp.models.baselines import BaselinesConfig, run_baselines

    cfg = stage_config(BaselinesConfig, config, set_, show_config)
    manifest = run_stage(lambda: run_baselines(cfg, Dataset.load(dataset), Split.load(splits),
                                          output))
    console.print(f"{manifest['rows']} recommendation lists -> {output}")


@app.command()
def evaluate(output: OutputOpt,
             dataset: DatasetOpt, splits: SplitsOpt,
             recommendations: Annotated[list[Path], typer.Option(
                 "--recommendations", "-r", help="Recommendation artifacts (repeatable).")],
             config: ConfigOpt = None, set_: SetOpt = None,
             show_config: ShowOpt = False) -> None:
    """Metrics by model, category and warm/cold segment; report and MLflow run."""
    from llarapp.data.dataset import Dataset, Split
    from llarapp.eval.evaluate import EvaluateConfig, run_evaluate
    from llarapp.eval.table import print_table

    cfg = stage_config(EvaluateConfig, config, set_, show_config)
    result = run_stage(lambda: run_evaluate(cfg, Dataset.load(dataset), Split.load(splits),
                                       list(recommendations), output))
    print_table(result["table"], f"{cfg.split} split")
    if "mlflow" in result:
        console.print(f"MLflow run {result['mlflow']['run_id']} at "
                      f"{result['mlflow']['tracking_uri']}")


@app.command("text-embed")
def text_embed(output: OutputOpt, dataset: DatasetOpt, config: ConfigOpt = None,
               set_: SetOpt = None, show_config: ShowOpt = False) -> None:
    """Embed track texts and playlist titles with a BERT-family encoder (MiniLM default)."""
    from llarapp.data.dataset import Dataset
    from llarapp.models.text_embed import TextEmbedConfig, run_text_embed

    cfg = stage_config(TextEmbedConfig, config, set_, show_config)
    manifest = run_stage(lambda: run_text_embed(cfg, Dataset.load(dataset), output))
    console.print(f"{manifest['counts']} {manifest['encoder_type']} vectors of dim "
                  f"{manifest['dim']} -> {output}")


@app.command()
def lightgcn(output: OutputOpt, dataset: DatasetOpt, splits: SplitsOpt,
                   config: ConfigOpt = None, set_: SetOpt = None,
                   show_config: ShowOpt = False) -> None:
    """Train LightGCN (torch-geometric) with BPR; early-stop on validation Recall@K."""
    from llarapp.data.dataset import Dataset, Split
    from llarapp.models.lightgcn import LightGCNConfig, run_lightgcn

    cfg = stage_config(LightGCNConfig, config, set_, show_config)
    manifest = run_stage(lambda: run_lightgcn(cfg, Dataset.load(dataset), Split.load(splits),
                                         output))
    console.print(f"best epoch {manifest['best_epoch']} of {manifest['epochs_run']}: val "
                  f"Recall@{cfg.k} {manifest['best_val_recall']:.4f}, "
                  f"{manifest['seconds_per_epoch']:.1f} s/epoch on {manifest['device']}")


@app.command("cold-mapper")
def cold_mapper(output: OutputOpt, dataset: DatasetOpt, splits: SplitsOpt,
                embeddings: EmbeddingsOpt, graph: GraphOpt, config: ConfigOpt = None,
                set_: SetOpt = None, show_config: ShowOpt = False) -> None:
    """Train the text → graph mappers and the tag classifier; write the catalogue."""
    from llarapp.data.dataset import Dataset, Split
    from llarapp.models.cold_mapper import ColdMapperConfig, run_cold_mapper
    from llarapp.models.graph import GraphEmbeddings
    from llarapp.models.text_embed import TextEmbeddings

    cfg = stage_config(ColdMapperConfig, config, set_, show_config)
    manifest = run_stage(lambda: run_cold_mapper(
        cfg, Dataset.load(dataset), Split.load(splits), TextEmbeddings.load(embeddings),
        GraphEmbeddings.load(graph).vectors, output))
    console.print_json(data={k: manifest[k] for k in ("title_query", "holdout_cosine", "counts")})


@app.command()
def retrieve(output: OutputOpt, dataset: DatasetOpt, splits: SplitsOpt, embeddings: EmbeddingsOpt,
             graph: GraphOpt, mapper: MapperOpt, config: ConfigOpt = None,
             set_: SetOpt = None, show_config: ShowOpt = False) -> None:
    """LightGCN, text-only and hybrid recommendations; the hybrid mix tuned on val."""
    from llarapp.data.dataset import Dataset, Split
    from llarapp.models.cold_mapper import ColdMapper
    from llarapp.models.graph import GraphEmbeddings
    from llarapp.models.retrieve import RetrieveConfig, run_retrieve
    from llarapp.models.text_embed import TextEmbeddings

    cfg = stage_config(RetrieveConfig, config, set_, show_config)
    manifest = run_stage(lambda: run_retrieve(
        cfg, Dataset.load(dataset), Split.load(splits), TextEmbeddings.load(embeddings),
        GraphEmbeddings.load(graph).vectors, ColdMapper.load(mapper), output))
    for query_type, chosen in manifest["hybrid_params"].items():
        console.print(f"{query_type}: λ = {chosen['lambda']}, cold tracks: λ = "
                      f"{chosen['cold_lambda']}, {chosen['cold_slots']} slots above rank "
                      f"{chosen['cold_slots_end']}")
    console.print(f"{manifest['rows']} lists -> {output}")


@app.command()
def llara(output: OutputOpt, dataset: DatasetOpt, splits: SplitsOpt, embeddings: EmbeddingsOpt,
                graph: GraphOpt, mapper: MapperOpt, retrieved: RetrievedOpt,
                config: ConfigOpt = None, set_: SetOpt = None,
                show_config: ShowOpt = False) -> None:
    """Domain pre-training, then curriculum prompt tuning of LLaRA with LoRA."""
    from llarapp.llara.config import LlaraConfig
    from llarapp.llara.examples import Sources
    from llarapp.llara.stage import run_llara

    cfg = stage_config(LlaraConfig, config, set_, show_config)
    manifest = run_stage(lambda: run_llara(
        cfg, Sources.load(dataset, splits, embeddings, graph, mapper, retrieved), output))
    summary = manifest["summary"]
    console.print(f"LLaRA ({cfg.schedule}): {summary['steps']} steps, final loss "
                  f"{summary['final_loss']:.3f}, {summary['seconds']} s -> {output}")


@app.command("eval-llara")
def eval_llara(output: OutputOpt,
               model: Annotated[Path, typer.Option("--model", help="llara artifact.")],
               dataset: DatasetOpt, splits: SplitsOpt, embeddings: EmbeddingsOpt, graph: GraphOpt,
               mapper: MapperOpt, retrieved: RetrievedOpt, config: ConfigOpt = None,
               set_: SetOpt = None, show_config: ShowOpt = False) -> None:
    """LLaRA vs LightGCN and the hybrid on the same candidates; position bias; reranking."""
    import pandas as pd

    from llarapp.llara.checkpoint import LlaraArtifact
    from llarapp.llara.eval_llara import LlaraEvalConfig, run_eval_llara
    from llarapp.llara.examples import Sources

    cfg = stage_config(LlaraEvalConfig, config, set_, show_config)
    result = run_stage(lambda: run_eval_llara(cfg, LlaraArtifact.load(model), Sources.load(
        dataset, splits, embeddings, graph, mapper, retrieved), output))
    console.print(pd.DataFrame(result["candidates"]).to_markdown(index=False, floatfmt=".4f"))
    console.print(result["position_bias"] | result["rerank"])


@app.command("export")
def export(output: OutputOpt,
           model: Annotated[Path, typer.Option("--model", help="llara artifact.")],
           dataset: DatasetOpt, splits: SplitsOpt, embeddings: EmbeddingsOpt, graph: GraphOpt,
           mapper: MapperOpt, retrieved: RetrievedOpt,
           evaluation: Annotated[Path | None, typer.Option(
               "--evaluation", help="eval-llara artifact (its metrics go into the manifest).")]
           = None,
           config: ConfigOpt = None, set_: SetOpt = None, show_config: ShowOpt = False) -> None:
    """ONNX + QInt8 ranker and text encoder, parity and latency report, serving bundle."""
    import pandas as pd

    from llarapp.export.config import ExportConfig
    from llarapp.export.stage import run_export
    from llarapp.llara.checkpoint import LlaraArtifact
    from llarapp.llara.examples import Sources
    from llarapp.models.text_embed import TextEmbeddings

    cfg = stage_config(ExportConfig, config, set_, show_config)
    result = run_stage(lambda: run_export(cfg, LlaraArtifact.load(model), Sources.load(
        dataset, splits, embeddings, graph, mapper, retrieved), TextEmbeddings.load(embeddings),
        output, evaluation))
    console.print(pd.DataFrame(result["variants"]).to_markdown(index=False, floatfmt=".4f"))
    console.print(f"chosen: {result['chosen']} ({result['why']})")
    console.print(result["summary"])
    console.print(f"bundle {result['model_version']} written to {output}")


@app.command("bundle-info")
def bundle_info(bundle: Annotated[str, typer.Argument(help="Bundle folder or s3:// prefix.")],
                verify: Annotated[bool, typer.Option(help="Check every file's sha256.")] = True
                ) -> None:
    """Print a bundle's version, sources, sizes and metrics after checking its files."""
    import json

    from llarapp.serving.bundle import Bundle

    info = run_stage(lambda: Bundle.load(bundle, verify=verify).summary())
    console.print_json(json.dumps(info, default=str))


@app.command()
def tune(dataset: DatasetOpt, splits: SplitsOpt, embeddings: EmbeddingsOpt,
         trials: Annotated[int | None, typer.Option(help="Trials to run.")] = None,
         storage: Annotated[str | None, typer.Option(
             help="Optuna RDB URL shared by parallel workers; default sqlite in runs/.")] = None,
         config: ConfigOpt = None, set_: SetOpt = None, show_config: ShowOpt = False) -> None:
    """Optuna search over LightGCN (dim, layers, lr, L2, negatives) and the hybrid λ, β."""
    from llarapp.data.dataset import Dataset, Split
    from llarapp.models.text_embed import TextEmbeddings
    from llarapp.models.tune import TuneConfig, run_tune, trials_table

    cfg = stage_config(TuneConfig, config, set_, show_config, trials=trials, storage=storage)
    result = run_stage(lambda: run_tune(cfg, Dataset.load(dataset), Split.load(splits),
                                   TextEmbeddings.load(embeddings)))
    typer.echo(trials_table(cfg).to_string(index=False))
    console.print_json(data=result)


# registers pipeline, register, deploy, registry, rollout, serve and catalogue
from llarapp import cli_online, cli_ops, cli_recommend, cli_rollout, cli_serve  # noqa: E402,F401
