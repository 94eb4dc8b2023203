"""``llarapp tune``: Optuna search over LightGCN and the hybrid's λ.

Each trial trains LightGCN with sampled dim, layers, lr, L2 and negatives (and samples
the hybrid's λ, λ_cold and number of cold slots), reporting
validation Recall@K after every epoch so ``MedianPruner`` can stop weak trials early;
then it fits the cold mappers on the trial's graph and returns the hybrid's validation
NDCG at the sampled λ. The study lives in an RDB: sqlite by default, or any SQLAlchemy
URL (e.g. ``postgresql://…``) shared by parallel workers running the same study name.
Each trial is a nested MLflow run under one parent run per ``tune`` invocation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llarapp.config import StageConfig, require
from llarapp.data.dataset import Dataset, Split
from llarapp.errors import ConfigError
from llarapp.models.cold_mapper import ColdMapperConfig, fit_mappers, graph_vectors_for_all
from llarapp.models.cold_mapper import holdout_mask as item_holdout_mask
from llarapp.models.hybrid import HybridScorer
from llarapp.models.lightgcn import LightGCNConfig, LightGCNTrainer, TrainedGraph, Validation
from llarapp.models.retrieve import tune_lambda
from llarapp.models.text_embed import TextEmbeddings
from llarapp.models.torch_utils import resolve_device
from llarapp.tracking import DEFAULT_WORKDIR, finite_metrics, start_tracking

TRIAL_METRICS = ("ndcg", "balanced_ndcg")  # one mix per trial: no budget to choose within


@dataclass
class TuneConfig(StageConfig):
    trials: int = 20
    study_name: str = "llarapp-lightgcn"
    storage: str = ""  # empty: sqlite in the work folder; else an RDB URL
    workdir: str = str(DEFAULT_WORKDIR)
    timeout_s: float = 0.0  # 0: no limit
    seed: int = 0
    epochs: int = 20
    dims: list[int] = field(default_factory=lambda: [32, 64, 128])
    layers: list[int] = field(default_factory=lambda: [1, 2, 3, 4])
    lr_range: list[float] = field(default_factory=lambda: [1e-3, 2e-2])
    reg_range: list[float] = field(default_factory=lambda: [1e-6, 1e-2])
    negatives: list[int] = field(default_factory=lambda: [1, 4, 8])
    lambda_range: list[float] = field(default_factory=lambda: [0.0, 3.0])
    cold_lambda_range: list[float] = field(default_factory=lambda: [0.0, 4.0])
    cold_slots_range: list[int] = field(default_factory=lambda: [0, 50])
    metric: str = "ndcg"  # or balanced_ndcg (mean of warm- and cold-target NDCG)
    pruner_warmup_epochs: int = 2
    mapper_epochs: int = 15
    experiment: str = "llarapp-tune"
    tracking_uri: str = ""
    track: bool = True

    def validate(self) -> None:
        require(self.trials >= 1, "trials must be at least 1")
        require(self.epochs >= 1, "epochs must be at least 1")
        for name in ("lr_range", "reg_range", "lambda_range", "cold_lambda_range",
                     "cold_slots_range"):
            low, high = (getattr(self, name) + [0, 0])[:2]
            require(len(getattr(self, name)) == 2 and 0 <= low <= high,
                    f"{name} must be [low, high] with 0 <= low <= high")
        require(self.lr_range[0] > 0 and self.reg_range[0] > 0,
                "lr_range and reg_range are log-scaled and must start above 0")
        require(self.metric in TRIAL_METRICS,
                f"metric must be one of {', '.join(TRIAL_METRICS)}")
        require(bool(self.dims) and bool(self.layers) and bool(self.negatives),
                "dims, layers and negatives must not be empty")

    def storage_url(self) -> str:
        """The RDB URL; for sqlite, its folder is created (sqlite will not)."""
        url = self.storage or f"sqlite:///{Path(self.workdir).resolve() / 'optuna.db'}"
        if url.startswith("sqlite:///"):
            Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        return url


def sample_params(trial: Any, cfg: TuneConfig) -> dict[str, Any]:
    return {
        "dim": trial.suggest_categorical("dim", cfg.dims),
        "layers": trial.suggest_categorical("layers", cfg.layers),
        "lr": trial.suggest_float("lr", *cfg.lr_range, log=True),
        "reg": trial.suggest_float("reg", *cfg.reg_range, log=True),
        "negatives": trial.suggest_categorical("negatives", cfg.negatives),
        "lam": trial.suggest_float("lam", *cfg.lambda_range),
        "cold_lambda": trial.suggest_float("cold_lambda", *cfg.cold_lambda_range),
        "cold_slots": trial.suggest_int("cold_slots", *cfg.cold_slots_range),
    }


class Objective:
    """Validation NDCG of the hybrid recommender for one trial's parameters."""

    def __init__(self, cfg: TuneConfig, dataset: Dataset, split: Split, text: TextEmbeddings,
                 mlflow: Any = None, parent_run: Any = None):
        self.cfg, self.dataset, self.split, self.text = cfg, dataset, split, text
        self.mlflow, self.parent_run = mlflow, parent_run
        self.val = split.heldout_for("val")
        self.validation = Validation.from_heldout(self.val, len(self.val))

    def __call__(self, trial: Any) -> float:
        import optuna

        params = sample_params(trial, self.cfg)
        graph_cfg = LightGCNConfig(
            dim=params["dim"], layers=params["layers"], lr=params["lr"], reg=params["reg"],
            negatives=params["negatives"], epochs=self.cfg.epochs, seed=self.cfg.seed)
        run = None
        if self.mlflow:
            run = self.mlflow.start_run(
                run_name=f"trial-{trial.number}", nested=True,
                experiment_id=self.parent_run.info.experiment_id,
                parent_run_id=self.parent_run.info.run_id, tags={"stage": "tune-trial"})
        try:
            if run:
                self.mlflow.log_params({**params, "trial": trial.number})

            def report(epoch: int, recall: float) -> None:
                trial.report(recall, epoch)
                if run:
                    self.mlflow.log_metric("val_recall", recall, step=epoch)
                if epoch >= self.cfg.pruner_warmup_epochs and trial.should_prune():
                    raise optuna.TrialPruned(f"pruned at epoch {epoch}")

            trainer = LightGCNTrainer(graph_cfg, self.split.train, self.dataset.num_tracks)
            trained = trainer.fit(self.validation, on_epoch=report)
            ndcg = self._hybrid_ndcg(trained, params["lam"], params["cold_lambda"],
                                     params["cold_slots"])
            if run:
                self.mlflow.log_metrics(finite_metrics(
                    {f"val_{self.cfg.metric}": ndcg, "best_val_recall": trained.best_recall,
                     "best_epoch": trained.best_epoch,
                     "seconds_per_epoch": trained.seconds_per_epoch}))
                self.mlflow.set_tag("state", "complete")
            return ndcg
        except optuna.TrialPruned:
            if run:
                self.mlflow.set_tag("state", "pruned")
            raise
        finally:
            if run:
                self.mlflow.end_run()

    def _hybrid_ndcg(self, trained: TrainedGraph, lam: float, cold_lambda: float,
                     cold_slots: int) -> float:
        mapper_cfg = ColdMapperConfig(epochs=self.cfg.mapper_epochs, seed=self.cfg.seed)
        device = resolve_device(mapper_cfg.device)
        graph = trained.vectors
        holdout = item_holdout_mask(self.dataset.num_tracks, mapper_cfg.holdout_fraction,
                                    mapper_cfg.seed)
        mappers = fit_mappers(mapper_cfg, self.text, graph, holdout, device)
        scorer = HybridScorer(
            self.text.items, graph, graph_vectors_for_all(mappers, self.text, graph, device),
            lambda titles: mappers.title_vectors(titles, device))
        table = tune_lambda(scorer, self.text, self.val, [lam], self.dataset.num_tracks,
                            batch_size=256, cold_lambdas=[cold_lambda],
                            cold_slot_counts=[cold_slots])
        return float(table[self.cfg.metric].iloc[0])


def open_study(cfg: TuneConfig) -> Any:
    """Create the study (and the storage's tables) or load it. Parallel workers should
    find it created: concurrent first-time creation races on the schema."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(
        study_name=cfg.study_name, storage=cfg.storage_url(), direction="maximize",
        load_if_exists=True, sampler=optuna.samplers.TPESampler(seed=cfg.seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2,
                                           n_warmup_steps=cfg.pruner_warmup_epochs))


def prepare_study(cfg: TuneConfig) -> dict[str, Any]:
    """What the tune pipeline runs before its workers: the study and the MLflow experiment."""
    study = open_study(cfg)
    if cfg.track:
        start_tracking(cfg.experiment, cfg.tracking_uri or None)
    return study_result(study, cfg)


def run_tune(cfg: TuneConfig, dataset: Dataset, split: Split, text: TextEmbeddings
             ) -> dict[str, Any]:
    study = open_study(cfg)
    mlflow = parent = None
    if cfg.track:
        mlflow, experiment_id, _ = start_tracking(cfg.experiment, cfg.tracking_uri or None)
        parent = mlflow.start_run(experiment_id=experiment_id, run_name=cfg.study_name,
                                  tags={"stage": "tune"})
        mlflow.log_params({k: str(v)[:500] for k, v in cfg.to_dict().items()})
    try:
        study.optimize(Objective(cfg, dataset, split, text, mlflow, parent), n_trials=cfg.trials,
                       timeout=cfg.timeout_s or None, gc_after_trial=True,
                       show_progress_bar=True)
        result = study_result(study, cfg)
        if "best_value" in result:
            if mlflow:
                mlflow.log_metric("best_val_ndcg", study.best_value)
                mlflow.log_params({f"best.{k}": v for k, v in study.best_params.items()})
        if parent:
            result["mlflow_run_id"] = parent.info.run_id
        return result
    finally:
        if parent:
            mlflow.end_run()


def study_result(study: Any, cfg: TuneConfig) -> dict[str, Any]:
    """Trial counts by state and, once a trial completed, the best value and parameters."""
    import optuna

    states = [t.state for t in study.trials]
    result: dict[str, Any] = {
        "study": cfg.study_name, "storage": cfg.storage_url(), "trials": len(states),
        "complete": states.count(optuna.trial.TrialState.COMPLETE),
        "pruned": states.count(optuna.trial.TrialState.PRUNED)}
    if result["complete"]:
        result |= {"best_value": study.best_value, "best_params": study.best_params}
    return result


def trials_table(cfg: TuneConfig) -> Any:
    return study_summary(cfg)[1]


def study_summary(cfg: TuneConfig) -> tuple[dict[str, Any], Any]:
    """(:func:`study_result`, the trials as a DataFrame) for an existing study."""
    import optuna

    try:
        study = optuna.load_study(study_name=cfg.study_name, storage=cfg.storage_url())
    except KeyError as exc:
        raise ConfigError(f"no study {cfg.study_name!r} in {cfg.storage_url()}; "
                          "run llarapp tune (or the tune pipeline) first") from exc
    table = study.trials_dataframe(attrs=("number", "value", "state", "params"))
    return study_result(study, cfg), table


