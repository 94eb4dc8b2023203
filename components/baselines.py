"""baselines: popularity and item-kNN recommendations for the held-out playlists."""

from kfp.dsl import Dataset, Input, Output

from components.image import component


@component
def baselines(dataset: Input[Dataset], splits: Input[Dataset],
              recommendations: Output[Dataset], similarity_alpha: float = 0.5):
    from llarapp.data.dataset import Dataset as LoadedDataset
    from llarapp.data.dataset import Split
    from llarapp.models.baselines import BaselinesConfig, run_baselines

    manifest = run_baselines(BaselinesConfig(similarity_alpha=similarity_alpha),
                             LoadedDataset.load(dataset.path), Split.load(splits.path),
                             recommendations.path)
    recommendations.metadata["models"] = manifest["models"]
