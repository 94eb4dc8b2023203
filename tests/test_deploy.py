"""Deploy: the rendered InferenceService, applying it through the Kubernetes API, and the
alias that moves only once it is applied."""

import pytest
import yaml
from fakes import FakeKube

from llarapp.deploy.config import DeployConfig
from llarapp.deploy.isvc import GROUP, PLURAL, VERSION
from llarapp.deploy.stage import MANIFEST_FILE, run_deploy
from llarapp.errors import ConfigError, DeployError
from llarapp.registry.aliases import Registry
from llarapp.registry.register import RegisterConfig, run_register
from tests.conftest import kserve_model, kserve_serialize


@pytest.fixture()
def release(bundle, tmp_path, monkeypatch):
    """A registered version (alias candidate) whose bundle sits at an s3:// URI."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    result = run_register(RegisterConfig(tracking_uri=uri), bundle.folder, tmp_path / "reg")
    registry = Registry("llarapp", uri)
    registry.client.set_model_version_tag("llarapp", "1", "storage_uri",
                                          "s3://models/llarapp/v1")
    return result | {"tracking_uri": uri, "registry": registry}


def rendered(folder):
    return yaml.safe_load((folder / MANIFEST_FILE).read_text())


def roundtrip(obj):
    model = kserve_model(obj)
    assert type(model).__name__ == "V1beta1InferenceService"
    return kserve_serialize(model)


def test_staging_render_moves_the_staging_alias(release, tmp_path):
    cfg = DeployConfig(tracking_uri=release["tracking_uri"])
    result = run_deploy(cfg, "1", tmp_path / "deploy")
    obj = rendered(tmp_path / "deploy")
    assert obj["kind"] == "InferenceService" and obj["metadata"]["name"] == "llarapp-staging"
    container = obj["spec"]["predictor"]["containers"][0]
    assert container["name"] == "kserve-container"
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["STORAGE_URI"] == "s3://models/llarapp/v1"
    assert env["LLARAPP_MODEL_VERSION"] == release["model_version"]
    assert "canaryTrafficPercent" not in obj["spec"]["predictor"]
    assert roundtrip(obj) == obj
    assert result["action"] == "rendered" and result["alias"] == {
        "name": "staging", "version": "1", "previous": None}
    assert release["registry"].aliases() == {"candidate": "1", "staging": "1"}


def test_canary_with_gpu_renders_the_split_and_the_mi100(release, tmp_path):
    registry = release["registry"]
    registry.move("staging", "1")
    cfg = DeployConfig(tracking_uri=release["tracking_uri"], target="canary",
                       canary_percent=20, gpu=True)
    run_deploy(cfg, "@staging", tmp_path / "deploy")
    obj = rendered(tmp_path / "deploy")
    predictor = obj["spec"]["predictor"]
    assert obj["metadata"]["name"] == "llarapp" and predictor["canaryTrafficPercent"] == 20
    assert predictor["nodeSelector"] == {"amd.com/gpu.product-name": "AMD_Instinct_MI100"}
    assert predictor["containers"][0]["resources"]["limits"]["amd.com/gpu"] == "1"
    assert roundtrip(obj) == obj
    assert registry.aliases()["canary"] == "1"


def test_a_skipped_step_moves_nothing(release, tmp_path):
    cfg = DeployConfig(tracking_uri=release["tracking_uri"], target="canary")
    with pytest.raises(Exception, match="does not hold 'staging'"):
        run_deploy(cfg, "1", tmp_path / "deploy")
    assert not (tmp_path / "deploy").exists()
    assert release["registry"].aliases() == {"candidate": "1"}


def test_apply_creates_then_merge_patches(release, tmp_path, kube):
    cfg = DeployConfig(tracking_uri=release["tracking_uri"], mode="apply", namespace="ml")
    first = run_deploy(cfg, "1", tmp_path / "one", api=kube.api())
    assert first["action"] == "created"
    stored = kube.objects[(PLURAL, "ml", "llarapp-staging")]
    assert stored["spec"]["predictor"]["containers"][0]["name"] == "kserve-container"
    second = run_deploy(cfg, "1", tmp_path / "two", api=kube.api())
    assert second["action"] == "patched"
    patch = [r for r in kube.requests if r["method"] == "PATCH"]
    assert patch[0]["path"] == f"/apis/{GROUP}/{VERSION}/namespaces/ml/{PLURAL}/llarapp-staging"
    assert patch[0]["content_type"] == "application/merge-patch+json"


def test_a_refused_apply_leaves_the_alias_alone(release, tmp_path):
    kube = FakeKube(deny=403)
    try:
        cfg = DeployConfig(tracking_uri=release["tracking_uri"], mode="apply")
        with pytest.raises(DeployError, match="403.*patch on inferenceservices"):
            run_deploy(cfg, "1", tmp_path / "deploy", api=kube.api())
    finally:
        kube.close()
    assert not (tmp_path / "deploy").exists()
    assert release["registry"].aliases() == {"candidate": "1"}


def test_apply_refuses_a_bundle_the_cluster_cannot_read(release, tmp_path, kube):
    release["registry"].client.set_model_version_tag("llarapp", "1", "storage_uri",
                                                     "file:///home/me/bundle")
    cfg = DeployConfig(tracking_uri=release["tracking_uri"], mode="apply")
    with pytest.raises(DeployError, match="bundle_uri=s3://"):
        run_deploy(cfg, "1", tmp_path / "deploy", api=kube.api())
    assert kube.objects == {}


@pytest.mark.parametrize("values, message", [
    ({"target": "production"}, "target must be one of"),
    ({"target": "canary", "deployment_mode": "RawDeployment"}, "ignores canaryTrafficPercent"),
    ({"service": "Bad_Name"}, "DNS label"),
    ({"canary_percent": 100}, "canary_percent"),
    ({"mode": "kubectl"}, "mode must be one of"),
])
def test_deploy_config_is_validated(values, message):
    with pytest.raises(ConfigError, match=message):
        DeployConfig(**values)
