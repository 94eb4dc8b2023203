"""The training pipeline: synth → ingest → split → {baselines, text_embed, lightgcn} →
cold_mapper → retrieve → {evaluate, llara → eval_llara → export}.

Later stages (register, deploy)
join this same pipeline; there is never a second orchestration.
"""

from kfp import dsl, kubernetes
from kfp.dsl import Dataset, PipelineTask

from components.baselines import baselines
from components.cold_mapper import cold_mapper
from components.evaluate import evaluate
from components.export import export
from components.ingest import ingest
from components.lightgcn import lightgcn
from components.llara import eval_llara, llara
from components.retrieve import retrieve
from components.split import split
from components.synth import synth
from components.text_embed import text_embed

PIPELINE_NAME = "llarapp-training"
GPU = "amd.com/gpu"
GPU_NODE_LABEL, GPU_NODE_VALUE = "amd.com/gpu.product-name", "AMD_Instinct_MI100"


def on_gpu(task: PipelineTask) -> PipelineTask:
    """One MI100: accelerator request, node selector and the GPU taint's toleration."""
    task.set_accelerator_type(GPU).set_accelerator_limit(1)
    kubernetes.add_node_selector(task, label_key=GPU_NODE_LABEL, label_value=GPU_NODE_VALUE)
    kubernetes.add_toleration(task, key=GPU, operator="Exists", effect="NoSchedule")
    return task


@dsl.pipeline(name=PIPELINE_NAME,
              description="LLaRA++ cold-start music recommender: data to evaluated models")
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
    llara_steps: int = 150,
    llara_pretrain_steps: int = 60,
    llara_schedule: str = "curriculum",
    llara_finetune: str = "lora",
    export_quantization: str = "auto",
    export_eval_prompts: int = 500,
    export_latency_repeats: int = 10,
    gate_metric: str = "ndcg",
    tracking_uri: str = "",
    experiment: str = "llarapp",
) -> Dataset:
    source = synth(data_uri=data_uri, num_playlists=synth_playlists, seed=seed)
    source.set_display_name("synth (data source)")
    data = ingest(slices=source.outputs["slices"], strict=strict_ingest)
    splits = split(dataset=data.outputs["dataset"], seed=seed, cold_fraction=cold_fraction)
    recs = baselines(dataset=data.outputs["dataset"], splits=splits.outputs["splits"],
                     similarity_alpha=knn_similarity_alpha)
    texts = text_embed(dataset=data.outputs["dataset"], encoder=text_encoder)
    graph = lightgcn(dataset=data.outputs["dataset"], splits=splits.outputs["splits"],
                     dim=lightgcn_dim, layers=lightgcn_layers, epochs=lightgcn_epochs, seed=seed)
    on_gpu(graph)
    mapper = cold_mapper(dataset=data.outputs["dataset"], splits=splits.outputs["splits"],
                         embeddings=texts.outputs["embeddings"], graph=graph.outputs["graph"],
                         seed=seed)
    retrieved = retrieve(dataset=data.outputs["dataset"], splits=splits.outputs["splits"],
                         embeddings=texts.outputs["embeddings"], graph=graph.outputs["graph"],
                         mapper=mapper.outputs["mapper"])
    evaluation = evaluate(dataset=data.outputs["dataset"], splits=splits.outputs["splits"],
                          recommendations=recs.outputs["recommendations"],
                          retrieved=retrieved.outputs["recommendations"],
                          tracking_uri=tracking_uri, experiment=experiment,
                          gate_metric=gate_metric)
    sources = {"dataset": data.outputs["dataset"], "splits": splits.outputs["splits"],
               "embeddings": texts.outputs["embeddings"], "graph": graph.outputs["graph"],
               "mapper": mapper.outputs["mapper"],
               "retrieved": retrieved.outputs["recommendations"]}
    ranker = on_gpu(llara(**sources, steps=llara_steps, pretrain_steps=llara_pretrain_steps,
                          schedule=llara_schedule, finetune=llara_finetune, seed=seed,
                          tracking_uri=tracking_uri, experiment=experiment))
    ranker_eval = on_gpu(eval_llara(model=ranker.outputs["model"], **sources,
                                    tracking_uri=tracking_uri, experiment=experiment))
    on_gpu(export(model=ranker.outputs["model"], evaluation=ranker_eval.outputs["evaluation"],
                  **sources, quantization=export_quantization, eval_prompts=export_eval_prompts,
                  latency_repeats=export_latency_repeats, tracking_uri=tracking_uri,
                  experiment=experiment))
    return evaluation.outputs["evaluation"]
