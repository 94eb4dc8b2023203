"""Create or merge-patch an InferenceService through the Kubernetes API."""

from __future__ import annotations

import os
from typing import Any

from llarapp.deploy.isvc import GROUP, PLURAL, VERSION
from llarapp.errors import DeployError


def custom_objects_api(context: str = "") -> Any:
    """In a pod: the service account's in-cluster config; elsewhere the kubeconfig."""
    from kubernetes import client, config

    kubeconfig = os.environ.get("KUBECONFIG")  # read now: the client reads it at import
    try:
        if context:
            config.load_kube_config(config_file=kubeconfig, context=context)
        else:
            try:
                config.load_incluster_config()
            except config.ConfigException:
                config.load_kube_config(config_file=kubeconfig)
    except (config.ConfigException, OSError) as exc:
        raise DeployError(
            f"no Kubernetes configuration ({exc}). Inside the cluster run with a service "
            "account allowed to patch inferenceservices; outside set KUBECONFIG or "
            "kube_context, or use mode=render") from exc
    return client.CustomObjectsApi()


def apply_inference_service(obj: dict[str, Any], api: Any) -> str:
    """Create ``obj``, or merge-patch the existing one; return ``created`` or ``patched``."""
    from kubernetes.client.exceptions import ApiException

    name, namespace = obj["metadata"]["name"], obj["metadata"]["namespace"]
    where = f"inferenceservice {namespace}/{name}"
    try:
        try:
            api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        except ApiException as exc:
            if exc.status != 404:
                raise
            api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, obj)
            return "created"
        api.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, obj)
        return "patched"
    except ApiException as exc:
        hint = {401: "the credentials were refused",
                403: "grant the pipeline's service account get/create/patch on "
                     "inferenceservices.serving.kserve.io (manifests/rbac)",
                404: "is KServe installed and does the namespace exist?"}.get(exc.status, "")
        raise DeployError(f"{where}: the API answered {exc.status} {exc.reason}. {hint}"
                          ) from exc
