"""The training pipeline, from MPD slices to a deployed, registered model version:

    synth → ingest → split → {baselines, text_embed, lightgcn} → cold_mapper → retrieve
      → llara → eval_llara → export → evaluate → register
      → if gate ≥ threshold and int8 parity holds: deploy

``evaluate`` runs after ``export`` so its report can show the LLaRA and quantization
results beside the retrieval metrics. ``make run`` runs this same pipeline with kfp.local.
"""


from kfp import dsl
from kfp.dsl import Dataset

from components.baselines import baselines
from components.cold_mapper import cold_mapper
from components.deploy import deploy
from components.eval_llara import eval_llara
from components.evaluate import evaluate
from components.export import export
from components.ingest import ingest
from components.lightgcn import lightgcn
from components.llara import llara
from components.register import register
from components.retrieve import retrieve
from components.split import split
from components.synth import synth
from components.text_embed import text_embed
from llarapp.data.ingest import IngestConfig
from llarapp.data.split import SplitConfig
from llarapp.data.synth import SynthConfig
from llarapp.deploy.config import DeployConfig
from llarapp.eval.evaluate import EvaluateConfig
from llarapp.export.config import ExportConfig
from llarapp.llara.config import LlaraConfig
from llarapp.models.baselines import BaselinesConfig
from llarapp.models.lightgcn import LightGCNConfig
from llarapp.models.text_embed import TextEmbedConfig
from llarapp.registry.register import RegisterConfig
from pipelines.platform import PlatformConfig

PIPELINE_NAME = "llarapp-training"
METRIC_GATE, PARITY_GATE = "metric-gate", "int8-parity-gate"


def build_training_pipeline(platform: PlatformConfig | None = None):
    """The pipeline function, with ``platform`` applied to every task."""
    platform = platform or PlatformConfig()
    # Every parameter's default is its stage config's (tests/test_defaults.py checks it).
    synth_cfg, ingest_cfg, split_cfg = SynthConfig(), IngestConfig(), SplitConfig()
    baselines_cfg, text_cfg, lightgcn_cfg = BaselinesConfig(), TextEmbedConfig(), LightGCNConfig()
    llara_cfg, export_cfg, evaluate_cfg = LlaraConfig(), ExportConfig(), EvaluateConfig()
    register_cfg, deploy_cfg = RegisterConfig(), DeployConfig()

    def stage(task, name: str):
        return platform.apply(task, name)

    @dsl.pipeline(name=PIPELINE_NAME,
                  description="LLaRA++ cold-start music recommender: MPD playlists to a "
                              "gated, registered and deployed KServe model")
    def training_pipeline(
        data_uri: str = "",
        synth_playlists: int = synth_cfg.num_playlists,
        seed: int = split_cfg.seed,
        strict_ingest: bool = ingest_cfg.strict,
        cold_fraction: float = split_cfg.cold_fraction,
        knn_similarity_alpha: float = baselines_cfg.similarity_alpha,
        text_encoder: str = text_cfg.encoder,
        lightgcn_dim: int = lightgcn_cfg.dim,
        lightgcn_layers: int = lightgcn_cfg.layers,
        lightgcn_epochs: int = lightgcn_cfg.epochs,
        llara_backbone: str = llara_cfg.backbone,
        llara_steps: int = llara_cfg.steps,
        llara_pretrain_steps: int = llara_cfg.pretrain_steps,
        llara_schedule: str = llara_cfg.schedule,
        llara_finetune: str = llara_cfg.finetune,
        export_quantization: str = export_cfg.quantization,
        export_max_delta_hr: float = export_cfg.max_delta_hr,
        export_eval_prompts: int = export_cfg.eval_prompts,
        export_latency_repeats: int = export_cfg.latency_repeats,
        gate_metric: str = evaluate_cfg.gate_metric,
        gate_model: str = evaluate_cfg.gate_model,
        gate_threshold: float = evaluate_cfg.gate_threshold,
        model_name: str = register_cfg.model_name,
        bundle_uri: str = register_cfg.bundle_uri,
        deploy_target: str = deploy_cfg.target,
        deploy_mode: str = deploy_cfg.mode,
        deploy_namespace: str = deploy_cfg.namespace,
        tracking_uri: str = register_cfg.tracking_uri,
        experiment: str = register_cfg.experiment,
    ) -> Dataset:
        tracking = {"tracking_uri": tracking_uri, "experiment": experiment}
        source = stage(synth(data_uri=data_uri, num_playlists=synth_playlists, seed=seed),
                       "synth")
        source.set_display_name("synth (data source)")
        data = stage(ingest(slices=source.outputs["slices"], strict=strict_ingest), "ingest")
        dataset = data.outputs["dataset"]
        splits = stage(split(dataset=dataset, seed=seed, cold_fraction=cold_fraction),
                       "split").outputs["splits"]
        recs = stage(baselines(dataset=dataset, splits=splits,
                               similarity_alpha=knn_similarity_alpha), "baselines")
        texts = stage(text_embed(dataset=dataset, encoder=text_encoder), "text-embed")
        graph = stage(lightgcn(dataset=dataset, splits=splits, dim=lightgcn_dim,
                               layers=lightgcn_layers, epochs=lightgcn_epochs, seed=seed),
                      "lightgcn")
        mapper = stage(cold_mapper(dataset=dataset, splits=splits,
                                   embeddings=texts.outputs["embeddings"],
                                   graph=graph.outputs["graph"], seed=seed), "cold-mapper")
        retrieved = stage(retrieve(dataset=dataset, splits=splits,
                                   embeddings=texts.outputs["embeddings"],
                                   graph=graph.outputs["graph"],
                                   mapper=mapper.outputs["mapper"]), "retrieve")
        sources = {"dataset": dataset, "splits": splits,
                   "embeddings": texts.outputs["embeddings"], "graph": graph.outputs["graph"],
                   "mapper": mapper.outputs["mapper"],
                   "retrieved": retrieved.outputs["recommendations"]}
        ranker = stage(llara(**sources, backbone=llara_backbone, steps=llara_steps,
                             pretrain_steps=llara_pretrain_steps, schedule=llara_schedule,
                             finetune=llara_finetune, seed=seed, **tracking), "llara")
        ranker_eval = stage(eval_llara(model=ranker.outputs["model"], **sources, **tracking),
                            "eval-llara")
        exported = stage(export(model=ranker.outputs["model"],
                                evaluation=ranker_eval.outputs["evaluation"], **sources,
                                quantization=export_quantization,
                                max_delta_hr=export_max_delta_hr,
                                eval_prompts=export_eval_prompts,
                                latency_repeats=export_latency_repeats, **tracking), "export")
        evaluation = stage(evaluate(dataset=dataset, splits=splits,
                                    recommendations=recs.outputs["recommendations"],
                                    retrieved=retrieved.outputs["recommendations"],
                                    llara_evaluation=ranker_eval.outputs["evaluation"],
                                    bundle=exported.outputs["bundle"], gate_metric=gate_metric,
                                    gate_model=gate_model, gate_threshold=gate_threshold,
                                    model_name=model_name, **tracking), "evaluate")
        registered = stage(register(bundle=exported.outputs["bundle"],
                                    evaluation=evaluation.outputs["evaluation"],
                                    model_name=model_name, bundle_uri=bundle_uri, **tracking),
                           "register")
        with dsl.If(evaluation.outputs["Output"] >= gate_threshold, name=METRIC_GATE):
            with dsl.If(exported.outputs["Output"] == True, name=PARITY_GATE):  # noqa: E712
                stage(deploy(registration=registered.outputs["registration"],
                             target=deploy_target, mode=deploy_mode,
                             namespace=deploy_namespace, **tracking), "deploy")
        return evaluation.outputs["evaluation"]

    return training_pipeline

