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
from pipelines.platform import PlatformConfig

PIPELINE_NAME = "llarapp-training"
METRIC_GATE, PARITY_GATE = "metric-gate", "int8-parity-gate"


def build_training_pipeline(platform: PlatformConfig | None = None):
    """The pipeline function, with ``platform`` applied to every task."""
    platform = platform or PlatformConfig()

    def stage(task, name: str):
        return platform.apply(task, name)

    @dsl.pipeline(name=PIPELINE_NAME,
                  description="LLaRA++ cold-start music recommender: MPD playlists to a "
                              "gated, registered and deployed KServe model")
    def training_pipeline(
        data_uri: str = "",
        synth_playlists: int = 2000,
        seed: int = 0,
        strict_ingest: bool = False,
        cold_fraction: float = 0.05,
        knn_similarity_alpha: float = 0.5,
        text_encoder: str = "minilm",
        lightgcn_dim: int = 64,
        lightgcn_layers: int = 3,
        lightgcn_epochs: int = 30,
        llara_backbone: str = "scratch",
        llara_steps: int = 150,
        llara_pretrain_steps: int = 60,
        llara_schedule: str = "curriculum",
        llara_finetune: str = "lora",
        export_quantization: str = "auto",
        export_max_delta_hr: float = 0.005,
        export_eval_prompts: int = 500,
        export_latency_repeats: int = 5,
        gate_metric: str = "ndcg",
        gate_model: str = "hybrid",
        gate_threshold: float = 0.05,
        model_name: str = "llarapp",
        bundle_uri: str = "",
        deploy_target: str = "staging",
        deploy_mode: str = "render",
        deploy_namespace: str = "llarapp",
        tracking_uri: str = "",
        experiment: str = "llarapp",
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

