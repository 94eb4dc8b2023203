"""The training pipeline: synth → ingest → split → baselines → evaluate.

Later stages (text embeddings, LightGCN, cold mapper, LLaRA, export, register, deploy)
join this same pipeline; there is never a second orchestration.
"""

from kfp import dsl
from kfp.dsl import Dataset

from components.baselines import baselines
from components.evaluate import evaluate
from components.ingest import ingest
from components.split import split
from components.synth import synth

PIPELINE_NAME = "llarapp-training"


@dsl.pipeline(name=PIPELINE_NAME,
              description="LLaRA++ cold-start music recommender: data to evaluated models")
def training_pipeline(
    data_uri: str = "",
    synth_playlists: int = 2000,
    seed: int = 0,
    strict_ingest: bool = False,
    cold_fraction: float = 0.05,
    knn_similarity_alpha: float = 0.5,
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
    evaluation = evaluate(dataset=data.outputs["dataset"], splits=splits.outputs["splits"],
                          recommendations=recs.outputs["recommendations"],
                          tracking_uri=tracking_uri, experiment=experiment,
                          gate_metric=gate_metric)
    return evaluation.outputs["evaluation"]
