"""A default lives in one place, the stage config dataclass: the pipelines' parameters and
the components' defaults must agree with it (configs/*.yaml: tests/test_config.py)."""

import importlib
import inspect

import pytest

from llarapp.stages import STAGES

CONFIGS = {s.name: s.config for s in STAGES}

# pipeline parameter → (stage, config field)
PARAMETERS = {
    "training": {
        "synth_playlists": ("synth", "num_playlists"), "seed": ("split", "seed"),
        "strict_ingest": ("ingest", "strict"), "cold_fraction": ("split", "cold_fraction"),
        "knn_similarity_alpha": ("baselines", "similarity_alpha"),
        "text_encoder": ("text_embed", "encoder"),
        **{f"lightgcn_{f}": ("lightgcn", f) for f in ("dim", "layers", "epochs")},
        **{f"llara_{f}": ("llara", f)
           for f in ("backbone", "steps", "pretrain_steps", "schedule", "finetune")},
        **{f"export_{f}": ("export", f)
           for f in ("quantization", "max_delta_hr", "eval_prompts", "latency_repeats")},
        **{f"gate_{f}": ("evaluate", f"gate_{f}") for f in ("metric", "model", "threshold")},
        "model_name": ("register", "model_name"), "bundle_uri": ("register", "bundle_uri"),
        **{f"deploy_{f}": ("deploy", f) for f in ("target", "mode", "namespace")},
        "tracking_uri": ("register", "tracking_uri"), "experiment": ("register", "experiment"),
    },
    "tune": {
        "synth_playlists": ("synth", "num_playlists"), "seed": ("tune", "seed"),
        "cold_fraction": ("split", "cold_fraction"), "text_encoder": ("text_embed", "encoder"),
        **{f: ("tune", f) for f in ("epochs", "study_name", "tracking_uri", "experiment")},
    },
    "batch": {**{f: ("recommend", f) for f in ("format", "k", "batch_size", "holdout_last",
                                               "targets", "precision", "team_info")},
              "tracking_uri": ("register", "tracking_uri")},  # the registry of models:/
}
# parameters that belong to the pipeline itself, not to a stage
PIPELINE_ONLY = {"data_uri", "workers", "trials_per_worker", "model_uri", "shards"}
# component parameters that are not config fields, with why
COMPONENT_ONLY = {
    ("synth", "data_uri"),  # where the slices come from; synth copies them if given
    ("recommend_bundle", "tracking_uri"),  # the registry to resolve models:/ in
}


def config_default(stage: str, field: str):
    module, cls = CONFIGS[stage].split(":")
    return getattr(getattr(importlib.import_module(module), cls)(), field)


def compiled_defaults(spec: dict) -> dict:
    return {name: p["defaultValue"]  # a parameter without one (storage) must be given
            for name, p in spec["root"]["inputDefinitions"]["parameters"].items()
            if "defaultValue" in p}


@pytest.mark.parametrize("pipeline", sorted(PARAMETERS))
def test_pipeline_parameters_default_to_the_stage_configs(pipeline, pipeline_specs):
    defaults = compiled_defaults(pipeline_specs[pipeline])
    for name, (stage, field) in PARAMETERS[pipeline].items():
        assert defaults[name] == config_default(stage, field), (pipeline, name)
    unmapped = set(defaults) - set(PARAMETERS[pipeline]) - PIPELINE_ONLY
    assert not unmapped, f"map {unmapped} to a stage config field in PARAMETERS"


def component_defaults():
    for stage in STAGES:
        module = importlib.import_module(f"components.{stage.name}")
        for function in stage.components:
            signature = inspect.signature(getattr(module, function).python_func)
            for name, parameter in signature.parameters.items():
                if parameter.default is not inspect.Parameter.empty:
                    yield stage.name, function, name, parameter.default


@pytest.mark.parametrize(("stage", "function", "name", "default"), list(component_defaults()),
                         ids=lambda value: str(value))
def test_component_defaults_are_the_stage_configs(stage, function, name, default):
    module, cls = CONFIGS[stage].split(":")
    config = getattr(importlib.import_module(module), cls)
    if name in config.field_names():
        assert default == getattr(config(), name)
    else:
        assert (function, name) in COMPONENT_ONLY, f"{function}.{name} is no {cls} field"
