"""retrieve: LightGCN, text-only and hybrid recommendations; λ tuned on validation."""

from kfp.dsl import Dataset, Input, Model, Output

from components.image import component


@component
def retrieve(dataset: Input[Dataset], splits: Input[Dataset], embeddings: Input[Dataset],
             graph: Input[Model], mapper: Input[Model], recommendations: Output[Dataset]):
    from llarapp.data.dataset import Dataset as LoadedDataset
    from llarapp.data.dataset import Split
    from llarapp.models.cold_mapper import ColdMapper
    from llarapp.models.graph import GraphEmbeddings
    from llarapp.models.retrieve import RetrieveConfig, run_retrieve
    from llarapp.models.text_embed import TextEmbeddings

    manifest = run_retrieve(RetrieveConfig(), LoadedDataset.load(dataset.path),
                            Split.load(splits.path), TextEmbeddings.load(embeddings.path),
                            GraphEmbeddings.load(graph.path).vectors,
                            ColdMapper.load(mapper.path), recommendations.path)
    recommendations.metadata.update({"models": manifest["models"],
                                     "hybrid_params": manifest["hybrid_params"]})
