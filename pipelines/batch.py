"""The batch pipeline: recommendations for every playlist of a dataset, from a registered
model version, overnight:

    recommend-bundle (models:/name@alias → the version's storage URI)
      → dsl.importer (the bundle as a Model artifact)
    recommend-shards (the input cut into N slices)
      → ParallelFor shard: recommend (one part per shard)
      → recommend-merge (Parquet or the challenge CSV, plus metrics when targets exist)

Every task gets the same :class:`PlatformConfig` as training (resources, secrets, env,
caching), so the two pipelines compile with the same platform settings. Batch scoring
runs on CPU: the ranker is int8 ONNX.
"""


from kfp import dsl
from kfp.dsl import Dataset, Model

from components.recommend import recommend, recommend_bundle, recommend_merge, recommend_shards
from llarapp.recommend.config import RecommendConfig
from llarapp.registry.register import RegisterConfig
from pipelines.platform import PlatformConfig

PIPELINE_NAME = "llarapp-batch"
LOOP = "shards"


def build_batch_pipeline(platform: PlatformConfig | None = None):
    platform = platform or PlatformConfig()
    defaults = RecommendConfig()

    @dsl.pipeline(name=PIPELINE_NAME,
                  description="LLaRA++ batch recommendations: a registered model version "
                              "scores a dataset of playlists in parallel shards")
    def batch_pipeline(
        data_uri: str,
        model_uri: str = "models:/llarapp@production",
        shards: int = 4,
        format: str = defaults.format,
        k: int = defaults.k,
        batch_size: int = defaults.batch_size,
        holdout_last: int = defaults.holdout_last,
        targets: str = defaults.targets,
        precision: str = defaults.precision,
        team_info: str = defaults.team_info,
        tracking_uri: str = RegisterConfig.tracking_uri,
    ) -> Dataset:
        located = platform.apply(recommend_bundle(model_uri=model_uri,
                                                  tracking_uri=tracking_uri), "recommend-bundle")
        bundle = dsl.importer(artifact_uri=located.output, artifact_class=Model,
                              reimport=False).set_display_name("import bundle")
        plan = platform.apply(recommend_shards(data_uri=data_uri, shards=shards,
                                               batch_size=batch_size),
                              "recommend-shards")
        with dsl.ParallelFor(items=plan.outputs["Output"], name=LOOP) as shard:
            part = platform.apply(recommend(bundle=bundle.output,
                                            playlists=plan.outputs["playlists"], shard=shard,
                                            format=format, k=k, batch_size=batch_size,
                                            holdout_last=holdout_last, targets=targets,
                                            precision=precision),
                                  "recommend")
        merged = platform.apply(recommend_merge(parts=dsl.Collected(part.outputs["part"]),
                                                playlists=plan.outputs["playlists"],
                                                format=format, k=k, holdout_last=holdout_last,
                                                team_info=team_info), "recommend-merge")
        return merged.outputs["recommendations"]

    return batch_pipeline
