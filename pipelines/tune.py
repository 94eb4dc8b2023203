"""The tune pipeline (hyperparameter search): data stages and the study, then Optuna workers in a
``dsl.ParallelFor`` that share one study through an RDB (``storage``: PostgreSQL or MySQL
on a cluster, sqlite only for local runs), then a summary of the study.

Optuna coordinates the workers through the storage: each asks it for a trial, so N
workers x T trials run N·T trials of one study, and the TPE sampler sees them all.
"""


from kfp import dsl

from components.ingest import ingest
from components.split import split
from components.synth import synth
from components.text_embed import text_embed
from components.tune import tune_study, tune_summary, tune_worker
from llarapp.data.split import SplitConfig
from llarapp.data.synth import SynthConfig
from llarapp.models.text_embed import TextEmbedConfig
from llarapp.models.tune import TuneConfig
from pipelines.platform import PlatformConfig

PIPELINE_NAME = "llarapp-tune"


def build_tune_pipeline(platform: PlatformConfig | None = None):
    platform = platform or PlatformConfig()
    tune_cfg = TuneConfig()  # the parameters' defaults (tests/test_defaults.py)

    @dsl.pipeline(name=PIPELINE_NAME,
                  description="Optuna search over LightGCN and the hybrid, parallel workers")
    def tune_pipeline(
        storage: str,
        data_uri: str = "",
        synth_playlists: int = SynthConfig.num_playlists,
        seed: int = tune_cfg.seed,
        cold_fraction: float = SplitConfig.cold_fraction,
        text_encoder: str = TextEmbedConfig.encoder,
        workers: list = [0, 1, 2, 3],  # noqa: B006 (a KFP parameter default, never mutated)
        trials_per_worker: int = 5,  # 4 workers x 5: TuneConfig's 20 trials
        epochs: int = tune_cfg.epochs,
        study_name: str = tune_cfg.study_name,
        tracking_uri: str = tune_cfg.tracking_uri,
        experiment: str = tune_cfg.experiment,
    ) -> str:
        source = platform.apply(synth(data_uri=data_uri, num_playlists=synth_playlists,
                                      seed=seed), "synth")
        dataset = platform.apply(ingest(slices=source.outputs["slices"]),
                                 "ingest").outputs["dataset"]
        splits = platform.apply(split(dataset=dataset, seed=seed, cold_fraction=cold_fraction),
                                "split").outputs["splits"]
        texts = platform.apply(text_embed(dataset=dataset, encoder=text_encoder), "text-embed")
        # The study (and its tables, and the MLflow experiment) exist before any worker.
        study = platform.apply(tune_study(storage=storage, study_name=study_name, seed=seed,
                                         tracking_uri=tracking_uri, experiment=experiment),
                               "tune-study")
        with dsl.ParallelFor(items=workers, name="optuna-workers") as worker:
            trial = platform.apply(
                tune_worker(dataset=dataset, splits=splits,
                           embeddings=texts.outputs["embeddings"], storage=storage,
                           worker=worker, study_name=study_name, trials=trials_per_worker,
                           epochs=epochs, seed=seed, tracking_uri=tracking_uri,
                           experiment=experiment), "tune-worker").after(study)
        best = platform.apply(tune_summary(storage=storage, study_name=study_name),
                              "tune-summary").after(trial)
        return best.outputs["Output"]

    return tune_pipeline

