"""manifests/ and kustomize/: every overlay builds with kubectl kustomize, every object
validates (kubernetes-validate for core kinds; the InferenceService through the kserve
package's model classes, where a lossless round trip catches unknown fields), and the
static InferenceService matches what `llarapp deploy` renders."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import yaml

from tests.conftest import REPO, kserve_model, kserve_serialize

KUSTOMIZE = {"staging": "kustomize/overlays/staging",
             "production": "kustomize/overlays/production",
             "production-gpu": "kustomize/overlays/production-gpu",
             "platform": "manifests/platform"}
CRD_KINDS = {"InferenceService", "PodMonitor", "PrometheusRule", "AlertmanagerConfig"}


def build(path: str) -> list[dict]:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not on PATH: `kubectl kustomize` cannot build the overlays")
    done = subprocess.run(["kubectl", "kustomize", str(REPO / path)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def isvc_of(objects: list[dict]) -> dict:
    (isvc,) = [o for o in objects if o["kind"] == "InferenceService"]
    return isvc


def kserve_round_trip(obj: dict) -> dict:
    return kserve_serialize(kserve_model(obj))


@pytest.mark.parametrize("name", KUSTOMIZE)
def test_every_object_validates(name):
    import kubernetes_validate

    objects = build(KUSTOMIZE[name])
    assert objects
    for obj in objects:
        if obj["kind"] == "InferenceService":
            assert kserve_round_trip(obj) == obj, "a field the v1beta1 schema does not know"
        elif obj["kind"] in CRD_KINDS:
            assert obj["metadata"]["name"] and obj["spec"]
        else:
            kubernetes_validate.validate(obj, "1.32.0", strict=True)


def test_the_round_trip_catches_an_unknown_field():
    isvc = isvc_of(build(KUSTOMIZE["production"]))
    isvc["spec"]["predictor"]["storageUri"] = "s3://not/a/predictor/field"
    assert kserve_round_trip(isvc) != isvc


def container(isvc: dict) -> dict:
    (kserve_container,) = isvc["spec"]["predictor"]["containers"]
    assert kserve_container["name"] == "kserve-container"
    return kserve_container


def env(isvc: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container(isvc)["env"]}


def test_production_has_the_canary_split_storage_and_service_account():
    isvc = isvc_of(build(KUSTOMIZE["production"]))
    predictor = isvc["spec"]["predictor"]
    assert predictor["canaryTrafficPercent"] == 10
    assert predictor["serviceAccountName"] == "llarapp-s3"
    assert env(isvc)["STORAGE_URI"].startswith("s3://")
    assert isvc["metadata"]["namespace"] == "llarapp"
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Serverless"
    assert "amd.com/gpu" not in container(isvc)["resources"]["limits"]


def test_production_pods_hold_a_full_mpd_catalogue():
    """Sized from the measured full-MPD serve with export's IVF index and two workers
    (benchmarks/serving_scale.py --workers 2): its PSS in memory, its bundle on disk."""
    from kubernetes.utils import parse_quantity

    measured = json.loads((REPO / "benchmarks/results/serving-scale-item-tokens-2.json")
                          .read_text())["summary"]
    assert measured["workers"] == 2 and measured["tracks"] >= 2_262_292
    serving = container(isvc_of(build(KUSTOMIZE["production"])))
    resources = serving["resources"]
    requests, limits = resources["requests"], resources["limits"]
    args = serving["args"]
    assert args[args.index("--workers") + 1] == "2"
    assert parse_quantity(requests["memory"]) >= measured["pss_after_gib"] * 2 ** 30
    assert parse_quantity(limits["memory"]) > parse_quantity(requests["memory"])
    assert parse_quantity(requests["ephemeral-storage"]) >= measured["bundle_gib"] * 2 ** 30
    assert parse_quantity(requests["cpu"]) == parse_quantity(limits["cpu"]) == 2


def test_production_prefers_vnni_nodes_without_requiring_them():
    """The int8 ranker's speed depends on VNNI (README, "Which CPU"); a cluster without
    node-feature-discovery's labels must still schedule the pods."""
    affinity = isvc_of(build(KUSTOMIZE["production"]))["spec"]["predictor"]["affinity"]
    node = affinity["nodeAffinity"]
    assert "requiredDuringSchedulingIgnoredDuringExecution" not in node
    keys = {expression["key"]
            for term in node["preferredDuringSchedulingIgnoredDuringExecution"]
            for expression in term["preference"]["matchExpressions"]}
    assert keys == {"feature.node.kubernetes.io/cpu-cpuid.AVX512VNNI",
                    "feature.node.kubernetes.io/cpu-cpuid.AVXVNNI"}


def test_the_gpu_component_adds_the_mi100():
    isvc = isvc_of(build(KUSTOMIZE["production-gpu"]))
    predictor = isvc["spec"]["predictor"]
    assert container(isvc)["resources"]["limits"]["amd.com/gpu"] == "1"
    assert predictor["nodeSelector"] == {"amd.com/gpu.product-name": "AMD_Instinct_MI100"}
    assert predictor["tolerations"][0]["key"] == "amd.com/gpu"
    assert env(isvc)["LLARAPP_PROVIDERS"] == "rocm,cpu"
    assert container(isvc)["args"][-2:] == ["--precision", "fp32"]  # all nodes on the GPU
    assert predictor["canaryTrafficPercent"] == 10


def test_staging_is_its_own_service_without_a_split():
    objects = build(KUSTOMIZE["staging"])
    isvc = isvc_of(objects)
    assert isvc["metadata"]["name"] == "llarapp-staging"  # the name `llarapp deploy` uses
    assert {o["metadata"]["namespace"] for o in objects} == {"llarapp-staging"}
    assert "canaryTrafficPercent" not in isvc["spec"]["predictor"]
    account = next(o for o in objects if o["kind"] == "ServiceAccount")
    assert account["secrets"] == [{"name": "llarapp-s3"}]  # created outside git


def test_the_readme_creates_every_secret_the_manifests_use():
    used: set[str] = set()

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("secretRef", "secretKeyRef", "credentials"):
                    used.add(value["name"])
                elif key == "secrets" and isinstance(value, list):
                    used.update(s["name"] for s in value)
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk([o for name in KUSTOMIZE for o in build(KUSTOMIZE[name])])
    assert {"minio-root", "mlflow-db", "llarapp-s3", "llarapp-retrain-webhook"} <= used
    readme = (REPO / "manifests/README.md").read_text()
    section = readme[readme.index("## Secrets"):]
    for name in used:
        assert f"create secret generic {name} " in section, name
    assert "serving.kserve.io/s3-endpoint" in section


def test_rbac_lets_the_pipeline_patch_inference_services():
    objects = build(KUSTOMIZE["production"])
    role = next(o for o in objects if o["kind"] == "Role")
    rule = next(r for r in role["rules"] if "inferenceservices" in r["resources"])
    assert {"get", "patch", "create"} <= set(rule["verbs"])
    binding = next(o for o in objects if o["kind"] == "RoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]


def test_the_static_service_matches_what_deploy_renders():
    from llarapp.deploy.config import DeployConfig
    from llarapp.deploy.isvc import inference_service

    static = isvc_of(build(KUSTOMIZE["production"]))
    release = {"model_name": "llarapp", "version": "1", "model_version": "v",
               "storage_uri": "s3://llarapp/bundles/v"}
    rendered = inference_service(DeployConfig(target="canary", workers=2), release)
    for key in ("name", "image", "args", "ports", "readinessProbe", "livenessProbe",
                "lifecycle", "securityContext", "volumeMounts"):
        assert container(static)[key] == container(rendered)[key], key
    for key in ("terminationGracePeriodSeconds", "volumes"):
        assert static["spec"]["predictor"][key] == rendered["spec"]["predictor"][key], key
    for key, value in rendered["metadata"]["annotations"].items():
        if key.startswith(("prometheus.io/", "serving.kserve.io/")):
            assert static["metadata"]["annotations"][key] == value
    assert [e["name"] for e in container(static)["env"]] == \
        [e["name"] for e in container(rendered)["env"]]


def test_dashboards_and_alerts_use_metrics_the_server_exports():
    from prometheus_client import REGISTRY

    import llarapp.serving.metrics  # noqa: F401  (registers the llarapp_* metrics)
    from llarapp.online.simulate import OnlineCounters

    exported = {m.name for m in REGISTRY.collect()}
    exported |= {m.name for m in OnlineCounters().registry.collect()}  # pushed by simulate
    exported |= {f"{n}_total" for n in exported} | {f"{n}_{s}" for n in exported
                                                    for s in ("bucket", "sum", "count", "info")}
    dashboard = json.loads((REPO / "manifests/platform/dashboards/llarapp.json").read_text())
    rules = next(o for o in build(KUSTOMIZE["platform"]) if o["kind"] == "PrometheusRule")
    text = json.dumps(dashboard) + json.dumps(rules)
    used = set(re.findall(r"\bllarapp_[a-z_]+\b", text))
    assert used and used <= exported, used - exported
    titles = {p["title"] for p in dashboard["panels"]}
    assert {"Predict latency", "Throughput", "Cold-start share",
            "Traffic split by model version", "Input drift (PSI per feature)"} <= titles
    alerts = {r["alert"] for g in rules["spec"]["groups"] for r in g["rules"]}
    assert alerts == {"LlarappP99LatencyHigh", "LlarappErrorRateHigh", "LlarappInputDrift"}


def test_argocd_applications_point_at_paths_that_exist():
    apps = list(yaml.safe_load_all((REPO / "manifests/argocd/applications.yaml").read_text()))
    assert {a["metadata"]["name"] for a in apps} == {"llarapp-staging", "llarapp-production",
                                                     "llarapp-platform"}
    for app in apps:
        assert (REPO / app["spec"]["source"]["path"] / "kustomization.yaml").is_file()


def test_drift_alert_reaches_the_retraining_webhook():
    objects = build(KUSTOMIZE["platform"])
    by_kind = {(o["kind"], o["metadata"]["name"]): o for o in objects}
    rules = next(o for o in objects if o["kind"] == "PrometheusRule")
    drift = next(r for g in rules["spec"]["groups"] for r in g["rules"]
                 if r.get("alert") == "LlarappInputDrift")
    route = by_kind[("AlertmanagerConfig", "llarapp-retrain")]["spec"]
    assert {"name": "action", "value": drift["labels"]["action"]} in route["route"]["matchers"]
    (receiver,) = route["receivers"]
    service = by_kind[("Service", "llarapp-retrain-webhook")]
    namespace, port = service["metadata"]["namespace"], service["spec"]["ports"][0]["port"]
    assert receiver["webhookConfigs"][0]["url"] == \
        f"http://llarapp-retrain-webhook.{namespace}:{port}/alerts"
    webhook = by_kind[("Deployment", "llarapp-retrain-webhook")]["spec"]["template"]["spec"]
    assert webhook["containers"][0]["command"] == ["llarapp", "pipeline", "retrain-webhook"]


POD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"}
WRITABLE_ROOT = set()  # containers that may keep a writable root filesystem, with reason


def pod_specs(obj: dict) -> list[dict]:
    if obj["kind"] == "InferenceService":
        return [obj["spec"]["predictor"]]
    if obj["kind"] in POD_KINDS:
        template = obj["spec"].get("jobTemplate", {}).get("spec", obj["spec"])["template"]
        return [template["spec"]]
    return []


@pytest.mark.parametrize("name", KUSTOMIZE)
def test_every_workload_is_locked_down(name):
    """Non-root, no privilege escalation, no capabilities, RuntimeDefault seccomp, and a
    read-only root filesystem, for every container of every workload we ship."""
    workloads = [(o, spec) for o in build(KUSTOMIZE[name]) for spec in pod_specs(o)]
    assert workloads
    for obj, spec in workloads:
        pod = spec.get("securityContext", {})
        for c in spec["containers"] + spec.get("initContainers", []):
            where = f"{obj['kind']}/{obj['metadata']['name']} container {c['name']}"
            own = c.get("securityContext", {})
            merged = pod | own
            assert merged.get("runAsNonRoot") is True, where
            assert merged.get("seccompProfile") == {"type": "RuntimeDefault"}, where
            assert own.get("allowPrivilegeEscalation") is False, where
            assert own.get("capabilities", {}).get("drop") == ["ALL"], where
            if c["name"] not in WRITABLE_ROOT:
                assert own.get("readOnlyRootFilesystem") is True, where


@pytest.mark.parametrize("name", KUSTOMIZE)
def test_no_secret_is_committed_with_values(name):
    for obj in build(KUSTOMIZE[name]):
        if obj["kind"] == "Secret":
            assert not obj.get("data") and not obj.get("stringData"), obj["metadata"]["name"]


def test_network_policies_guard_the_predictor_mlflow_and_minio():
    policies = {o["metadata"]["name"]: o for o in build(KUSTOMIZE["production"])
                + build(KUSTOMIZE["platform"]) if o["kind"] == "NetworkPolicy"}
    predictor = policies["llarapp-predictor-ingress"]["spec"]
    sources = [peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
               for rule in predictor["ingress"] for peer in rule["from"]]
    assert sorted(sources) == ["istio-system", "knative-serving", "monitoring"]
    for name in ("mlflow-from-pipelines", "minio-from-pipelines"):
        peers = [p for rule in policies[name]["spec"]["ingress"] for p in rule["from"]]
        assert {"pipelines.kubeflow.org/v2_component": "true"} in [
            p.get("podSelector", {}).get("matchLabels") for p in peers], name


def test_the_images_do_not_run_as_root():
    for dockerfile in ("Dockerfile", "kserve/Dockerfile"):
        users = re.findall(r"^USER\s+(\S+)", (REPO / dockerfile).read_text(), re.M)
        assert users and users[-1] not in ("0", "root"), dockerfile


def test_the_predictor_drains_before_it_is_killed():
    """preStop takes the pod out of the load balancers before SIGTERM, and the grace
    period covers that wait plus the server's own drain."""
    from llarapp.serving.config import ServeConfig

    predictor = isvc_of(build(KUSTOMIZE["production"]))["spec"]["predictor"]
    sleep = predictor["containers"][0]["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep[0] == "sleep" and int(sleep[1]) >= 5
    assert predictor["terminationGracePeriodSeconds"] > int(sleep[1]) + \
        ServeConfig().grace_period_s
