"""split: held-out continuation playlists by category, cold tracks, next-track view."""

from kfp.dsl import Dataset, Input, Output

from components.image import component


@component
def split(dataset: Input[Dataset], splits: Output[Dataset], seed: int = 0,
          cold_fraction: float = 0.05):
    from llarapp.data.dataset import Dataset as LoadedDataset
    from llarapp.data.split import SplitConfig, run_split

    cfg = SplitConfig(seed=seed, cold_fraction=cold_fraction)
    manifest = run_split(cfg, LoadedDataset.load(dataset.path), splits.path)
    splits.metadata.update(manifest["counts"])
