"""Each stage goes by one name: library entry point, config file, CLI verb, component,
pipeline task and artifact (llarapp/stages.py), and the README's table says so."""

import importlib
import inspect

import pytest
import typer.main

from llarapp.cli import app
from llarapp.stages import STAGES, markdown_table
from tests.conftest import REPO


@pytest.fixture(scope="module")
def pipeline_tasks(pipeline_specs):
    """Every task name of each compiled pipeline, loops included."""
    tasks = {}
    for name, spec in pipeline_specs.items():
        tasks[name] = set(spec["root"]["dag"]["tasks"])
        for component in spec["components"].values():
            tasks[name] |= set(component.get("dag", {}).get("tasks", {}))
    return tasks


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.name)
def test_the_stage_has_one_name_everywhere(stage, pipeline_tasks):
    module = importlib.import_module(stage.module)
    entry = getattr(module, f"run_{stage.name}", None)
    assert callable(entry), f"{stage.module} has no run_{stage.name}"
    config_module, config_class = stage.config.split(":")
    config = getattr(importlib.import_module(config_module), config_class)
    assert config.from_yaml(REPO / "configs" / f"{stage.name}.yaml") == config()
    assert config.__name__ in inspect.signature(entry).parameters["cfg"].annotation
    components = importlib.import_module(f"components.{stage.name}")
    for function in stage.components:
        assert hasattr(getattr(components, function), "component_spec"), function
        assert function.replace("_", "-") in pipeline_tasks[stage.pipeline], function
    verbs = typer.main.get_command(app).commands
    assert stage.verb in verbs, f"no `llarapp {stage.verb}`"
    task, output = stage.artifact.split("/")
    producer = getattr(components, task.replace("-", "_"))
    assert output in producer.component_spec.outputs, (task, output)


def test_every_component_file_and_config_file_belongs_to_a_stage():
    names = {s.name for s in STAGES}
    files = {p.stem for p in (REPO / "components").glob("*.py")} - {"__init__", "image"}
    assert files == names
    configs = {p.stem for p in (REPO / "configs").glob("*.yaml")} - {"platform", "serve"}
    assert configs == names  # platform: cluster settings; serve: the server, not a stage


def test_the_readme_shows_the_table():
    assert markdown_table() in (REPO / "README.md").read_text()
