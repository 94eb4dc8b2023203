"""llara: domain pre-training, then curriculum prompt tuning with LoRA."""

from kfp.dsl import Dataset, Input, Model, Output

from components.image import component


@component
def llara(dataset: Input[Dataset], splits: Input[Dataset], embeddings: Input[Dataset],
          graph: Input[Model], mapper: Input[Model], retrieved: Input[Dataset],
          model: Output[Model], backbone: str = "scratch", steps: int = 150,
          pretrain_steps: int = 60,
          schedule: str = "curriculum", finetune: str = "lora", seed: int = 0,
          tracking_uri: str = "", experiment: str = "llarapp"):
    from llarapp.llara.config import LlaraConfig
    from llarapp.llara.examples import Sources
    from llarapp.llara.stage import run_llara

    cfg = LlaraConfig(backbone=backbone, steps=steps, pretrain_steps=pretrain_steps,
                      schedule=schedule, finetune=finetune, seed=seed,
                      tracking_uri=tracking_uri, experiment=experiment)
    sources = Sources.load(dataset.path, splits.path, embeddings.path, graph.path, mapper.path,
                           retrieved.path)
    manifest = run_llara(cfg, sources, model.path)
    model.metadata.update({"backbone": manifest["backbone"], "schedule": schedule,
                           **manifest["summary"]})
