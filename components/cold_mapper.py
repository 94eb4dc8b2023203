"""cold_mapper: text → graph MLPs for cold tracks and title-only playlists; track tags."""

from kfp.dsl import Dataset, Input, Model, Output

from components.image import component


@component
def cold_mapper(dataset: Input[Dataset], splits: Input[Dataset], embeddings: Input[Dataset],
                graph: Input[Model], mapper: Output[Model], seed: int = 0):
    from llarapp.data.dataset import Dataset as LoadedDataset
    from llarapp.data.dataset import Split
    from llarapp.models.cold_mapper import ColdMapperConfig, run_cold_mapper
    from llarapp.models.graph import GraphEmbeddings
    from llarapp.models.text_embed import TextEmbeddings

    manifest = run_cold_mapper(ColdMapperConfig(seed=seed), LoadedDataset.load(dataset.path),
                               Split.load(splits.path), TextEmbeddings.load(embeddings.path),
                               GraphEmbeddings.load(graph.path).vectors, mapper.path)
    mapper.metadata.update({"title_query": manifest["title_query"],
                            "holdout_cosine": manifest["holdout_cosine"]})
