"""text_embed: item and playlist-title embeddings from a BERT-family encoder."""

from kfp.dsl import Dataset, Input, Output

from components.image import component


@component
def text_embed(dataset: Input[Dataset], embeddings: Output[Dataset], encoder: str = "minilm"):
    from llarapp.data.dataset import Dataset as LoadedDataset
    from llarapp.models.text_embed import TextEmbedConfig, run_text_embed

    manifest = run_text_embed(TextEmbedConfig(encoder=encoder), LoadedDataset.load(dataset.path),
                              embeddings.path)
    embeddings.metadata.update({"encoder": manifest["encoder"], "dim": manifest["dim"]})
