"""``llarapp rollout start|status|promote|rollback|auto``: the canary of an
InferenceService (see kustomize/README.md for the kubectl equivalents)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from llarapp.cli_common import ConfigOpt, SetOpt, app, console, run_stage, stage_config

rollout_app = typer.Typer(help="Canary rollout: start, status, promote, rollback, auto.",
                          no_args_is_help=True)
app.add_typer(rollout_app, name="rollout")

DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Print the kubectl patches only.")]


def _rollout(config: Path | None, set_: list[str] | None, dry_run: bool, registry: bool = True):
    from llarapp.deploy.kube import custom_objects_api
    from llarapp.rollout.config import RolloutConfig
    from llarapp.rollout.controller import Rollout

    cfg = stage_config(RolloutConfig, config, set_, False, dry_run=dry_run or None)
    api = run_stage(lambda: custom_objects_api(cfg.kube_context))
    found = None
    if registry:
        from llarapp.registry.aliases import Registry

        found = Registry(cfg.model_name, cfg.tracking_uri or None)
    return cfg, Rollout(cfg, api, found,
                        echo=lambda line: console.print(line, markup=False, highlight=False))


@rollout_app.command("start")
def start(
    storage_uri: Annotated[str | None, typer.Option(help="The new bundle (s3://…).")] = None,
    version: Annotated[str | None, typer.Option(
        help="Registered version (number or @alias): its storage_uri and model_version, "
             "and the canary alias follows.")] = None,
    model_version: Annotated[str, typer.Option(help="With --storage-uri: the bundle's "
                                                    "model version.")] = "",
    percent: Annotated[int | None, typer.Option(help="Canary share; default: the first "
                                                     "step.")] = None,
    config: ConfigOpt = None, set_: SetOpt = None, dry_run: DryRunOpt = False,
) -> None:
    """Point the predictor at a new bundle and give it a share of the traffic."""
    from llarapp.deploy.stage import release_from_registry
    from llarapp.errors import ConfigError

    cfg, rollout = _rollout(config, set_, dry_run)

    def run():
        release = {"storage_uri": storage_uri, "model_version": model_version, "version": ""}
        if version:
            release = release_from_registry(rollout.registry, version)
        if not release["storage_uri"]:
            raise ConfigError("give --storage-uri or --version")
        return rollout.start(release["storage_uri"], release["model_version"],
                             release["version"], percent)

    console.print_json(data=run_stage(run))


@rollout_app.command("status")
def status(config: ConfigOpt = None, set_: SetOpt = None) -> None:
    """The canary share, both versions and readiness (`kubectl get isvc` in JSON)."""
    _, rollout = _rollout(config, set_, False, registry=False)
    console.print_json(data=run_stage(rollout.status))


@rollout_app.command("promote")
def promote(config: ConfigOpt = None, set_: SetOpt = None, dry_run: DryRunOpt = False) -> None:
    """One step up (10 → 50 → 100); at 100 the production alias moves."""
    _, rollout = _rollout(config, set_, dry_run)
    console.print_json(data=run_stage(rollout.promote))


@rollout_app.command("rollback")
def rollback(config: ConfigOpt = None, set_: SetOpt = None, dry_run: DryRunOpt = False) -> None:
    """canaryTrafficPercent 0: all traffic back on the stable version."""
    _, rollout = _rollout(config, set_, dry_run)
    console.print_json(data=run_stage(rollout.rollback))


@rollout_app.command("auto")
def auto(config: ConfigOpt = None, set_: SetOpt = None, dry_run: DryRunOpt = False) -> None:
    """Poll Prometheus; promote step by step while the canary is as good as stable, roll
    back when it is not, or when timeout_s passes."""
    from llarapp.rollout.signals import PrometheusSignals

    cfg, rollout = _rollout(config, set_, dry_run)
    signals = PrometheusSignals(cfg.prometheus_url, cfg.namespace, cfg.model_name, cfg.window)
    result = run_stage(lambda: rollout.auto(signals))
    console.print_json(data=result)
    if result["action"] == "rolled back":
        raise typer.Exit(1)
