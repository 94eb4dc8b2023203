"""recommend: the batch pipeline's stages. The registered bundle's location, the input cut
into shards, one scoring task per shard, and the merge into one output with its metrics."""


from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components.image import component


@component
def recommend_bundle(model_uri: str, tracking_uri: str = "") -> str:
    """The storage URI of ``model_uri`` (``models:/name@alias``), for ``dsl.importer``."""
    from llarapp.recommend.batch import bundle_location

    return bundle_location(model_uri, tracking_uri or None)


@component
def recommend_shards(data_uri: str, shards: int, batch_size: int, playlists: Output[Dataset]
                     ) -> list[int]:
    from llarapp.recommend.shards import plan_shards

    ids = plan_shards(data_uri, shards, playlists.path, batch_size)
    playlists.metadata["shards"] = len(ids)
    return ids


@component
def recommend(bundle: Input[Model], playlists: Input[Dataset], shard: int, part: Output[Dataset],
              format: str, k: int, batch_size: int, holdout_last: int, targets: str,
              precision: str):
    from llarapp.recommend.config import RecommendConfig
    from llarapp.recommend.shards import run_part
    from llarapp.storage import parse_uri

    cfg = RecommendConfig(format=format, k=k, batch_size=batch_size,
                          holdout_last=holdout_last, targets=targets, precision=precision)
    source = bundle.uri if parse_uri(bundle.uri).is_s3 else bundle.path
    manifest = run_part(cfg, source, playlists.path, shard, part.path)
    part.metadata.update({k: manifest[k] for k in ("shard", "playlists", "seconds")})


@component
def recommend_merge(parts: Input[list[Dataset]], playlists: Input[Dataset],
                    recommendations: Output[Dataset], metrics: Output[Metrics],
                    format: str, k: int, holdout_last: int, team_info: str) -> str:
    from llarapp.recommend.config import RecommendConfig
    from llarapp.recommend.shards import merge_parts

    cfg = RecommendConfig(format=format, k=k, holdout_last=holdout_last, team_info=team_info)
    summary = merge_parts(cfg, [p.path for p in parts], playlists.path, recommendations.path)
    recommendations.metadata.update({k: summary[k] for k in ("playlists", "shards",
                                                             "model_version", "file")})
    for name, value in summary["metrics"].items():
        metrics.log_metric(name, value)
    return summary["model_version"]
