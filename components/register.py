"""register: an MLflow model version holding the bundle, alias ``candidate``; the bundle
copied to object storage when ``bundle_uri`` is set."""

from kfp.dsl import Artifact, Dataset, Input, Model, Output

from components.image import component


@component
def register(bundle: Input[Model], evaluation: Input[Dataset], registration: Output[Artifact],
             model_name: str = "llarapp", bundle_uri: str = "", tracking_uri: str = "",
             experiment: str = "llarapp") -> str:
    from llarapp.registry.register import RegisterConfig, run_register

    cfg = RegisterConfig(model_name=model_name, bundle_uri=bundle_uri,
                         tracking_uri=tracking_uri, experiment=experiment)
    result = run_register(cfg, bundle.path, registration.path, evaluation.path)
    registration.metadata.update({k: result[k] for k in ("model_name", "version",
                                                          "model_version", "storage_uri")})
    return result["version"]
