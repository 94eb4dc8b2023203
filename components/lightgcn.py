"""lightgcn: torch-geometric LightGCN on the playlist–track training graph."""

from kfp.dsl import Dataset, Input, Model, Output

from components.image import component


@component
def lightgcn(dataset: Input[Dataset], splits: Input[Dataset], graph: Output[Model],
             dim: int = 64, layers: int = 3, epochs: int = 30, seed: int = 0):
    from llarapp.data.dataset import Dataset as LoadedDataset
    from llarapp.data.dataset import Split
    from llarapp.models.lightgcn import LightGCNConfig, run_lightgcn

    cfg = LightGCNConfig(dim=dim, layers=layers, epochs=epochs, seed=seed)
    manifest = run_lightgcn(cfg, LoadedDataset.load(dataset.path), Split.load(splits.path),
                            graph.path)
    graph.metadata.update({k: manifest[k] for k in ("best_epoch", "best_val_recall",
                                                    "seconds_per_epoch", "device")})
