"""Online commands: ``simulate`` (A/B replay against a live server) and ``drift``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from llarapp.cli_common import (
    ConfigOpt,
    DatasetOpt,
    SetOpt,
    ShowOpt,
    SplitsOpt,
    app,
    run_stage,
    stage_config,
)

ReportOpt = Annotated[Path, typer.Option("--output", "-o", help="Report folder.")]


@app.command()
def simulate(
    dataset: DatasetOpt, splits: SplitsOpt, output: ReportOpt = Path("runs/simulate"),
    url: Annotated[str | None, typer.Option(help="Model server, e.g. http://127.0.0.1:8080 "
                                                 "or the cluster ingress.")] = None,
    host_header: Annotated[str | None, typer.Option(
        help="Host header for the ingress (the InferenceService's URL host).")] = None,
    limit: Annotated[int | None, typer.Option(help="Playlists to replay; 0: all.")] = None,
    concurrency: Annotated[int | None, typer.Option(help="Requests in flight.")] = None,
    rate: Annotated[float | None, typer.Option(help="Requests per second; 0: no pacing.")] = None,
    pushgateway: Annotated[str | None, typer.Option(
        help="Push llarapp_online_* counters here for `rollout auto`.")] = None,
    config: ConfigOpt = None, set_: SetOpt = None, show_config: ShowOpt = False,
) -> None:
    """Replay held-out playlists as continuation requests; hit rate and NDCG per model version."""
    from llarapp.data.dataset import Dataset, Split
    from llarapp.online.replay import replay_stream
    from llarapp.online.report import score, write_report
    from llarapp.online.simulate import SimulateConfig
    from llarapp.online.simulate import simulate as run_simulate

    cfg = stage_config(SimulateConfig, config, set_, show_config, url=url, host_header=host_header,
                  limit=limit, concurrency=concurrency, rate=rate, pushgateway=pushgateway)

    def run() -> dict:
        replays = replay_stream(Dataset.load(dataset), Split.load(splits), cfg.split,
                                cfg.limit, cfg.k, cfg.seed)
        scored = score(run_simulate(cfg, replays), cfg.k)
        return write_report(output, scored, replays, cfg.to_dict())

    summary = run_stage(run)
    console = typer.echo
    console(f"online evaluation against {cfg.url} ({cfg.split} split, k={cfg.k}):")
    for row in summary["by_version"]:
        console(f"  model_version {row['model_version']}: online hit rate "
                f"{row['hit_rate']:.4f}, NDCG@{cfg.k} {row['ndcg']:.4f} over "
                f"{row['requests']} requests ({row['errors']} errors), p95 "
                f"{row['p95_ms']:.0f} ms")
    console(f"report: {output}/report.md")


drift_app = typer.Typer(help="Input drift against the training reference.", no_args_is_help=True)
app.add_typer(drift_app, name="drift")


@drift_app.command("report")
def drift_report(
    bundle: Annotated[str, typer.Option("--bundle", "-b", help="Serving bundle (its "
                                        "drift_reference.json), folder or s3://.")],
    requests: Annotated[Path, typer.Option(
        help="JSON lines of V1 instances or bodies, e.g. a simulate run's requests.jsonl.")],
    output: ReportOpt = Path("runs/drift"),
    fail_on_drift: Annotated[bool, typer.Option(
        help="Exit 3 when any feature's PSI is significant (for a retraining trigger).")] = False,
) -> None:
    """PSI per request feature of logged requests against the bundle's training reference."""
    from llarapp.online.drift_report import drift_report as run_report

    result = run_stage(lambda: run_report(bundle, requests, output))
    typer.echo(f"{result['requests']} requests against {result['reference']} "
               f"(model {result['model_version']}):")
    typer.echo(result["table"].to_markdown(index=False, floatfmt=".4f"))
    typer.echo(f"report: {output}/drift.md")
    if result["drifted"]:
        typer.echo(f"significant drift on {', '.join(result['drifted'])}")
        if fail_on_drift:
            raise typer.Exit(3)
