"""ingest: MPD slices → validated Parquet tables with a manifest."""

from kfp.dsl import Dataset, Input, Output

from components.image import component


@component
def ingest(slices: Input[Dataset], dataset: Output[Dataset], strict: bool = False):
    from llarapp.data.ingest import IngestConfig, run_ingest
    from llarapp.data.source import source_uri

    manifest = run_ingest(IngestConfig(input=source_uri(slices.path), strict=strict),
                          dataset.path)
    dataset.metadata.update(manifest["counts"])
    dataset.metadata["content_hash"] = manifest["content_hash"]
