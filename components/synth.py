"""synth: resolve the data source — synthetic MPD slices, or a pointer to user data."""

from kfp.dsl import Dataset, Output

from components.image import component


@component
def synth(slices: Output[Dataset], data_uri: str = "", num_playlists: int = 2000,
          seed: int = 0):
    """Generate ``num_playlists`` synthetic playlists, unless ``data_uri`` names real data:
    then the artifact is a pointer to it (large data is never copied between stages)."""
    from llarapp.data.source import resolve_data_source

    manifest = resolve_data_source(slices.path, data_uri, num_playlists=num_playlists,
                                   seed=seed)
    slices.metadata.update({"kind": manifest["kind"], "uri": manifest.get("uri", slices.path)})
