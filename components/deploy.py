"""deploy: render the InferenceService for the registered version (apply it on a
cluster) and move the version's alias to the target."""

from kfp.dsl import Artifact, Input, Markdown, Output

from components.image import component


@component
def deploy(registration: Input[Artifact], manifest: Output[Artifact],
           summary: Output[Markdown], target: str = "staging", mode: str = "render",
           namespace: str = "llarapp", service: str = "llarapp", canary_percent: int = 10,
           tracking_uri: str = "", experiment: str = "llarapp"):
    from pathlib import Path

    from llarapp.deploy.config import DeployConfig
    from llarapp.deploy.stage import MANIFEST_FILE, run_deploy
    from llarapp.registry.register import load_registration

    release = load_registration(registration.path)
    cfg = DeployConfig(model_name=release["model_name"], target=target, mode=mode,
                       namespace=namespace, service=service, canary_percent=canary_percent,
                       tracking_uri=tracking_uri, experiment=experiment)
    result = run_deploy(cfg, release["version"], manifest.path)
    manifest.metadata.update({k: result[k] for k in ("service", "namespace", "target",
                                                      "action", "version")})
    rendered = (Path(manifest.path) / MANIFEST_FILE).read_text()
    Path(summary.path).write_text(
        f"# Deploy: {result['action']} {result['namespace']}/{result['service']}\n\n"
        f"Version {result['version']} ({result['model_version']}) is now "
        f"`{result['alias']['name']}` (was {result['alias']['previous']}).\n\n"
        f"```yaml\n{rendered}```\n"
        + "".join(f"\n> {note}\n" for note in result["notes"]))
