"""The stages and the one name each goes by.

A stage ``name`` (snake_case) is, everywhere:

* its library entry point ``run_<name>`` in ``module``, configured by ``config``;
* its config file ``configs/<name>.yaml`` and its CLI verb ``llarapp <name>`` (``_`` → ``-``);
* its KFP component ``<name>`` in ``components/<name>.py`` and its pipeline task ``<name>``
  (``_`` → ``-``), whose outputs land in ``<pipeline root>/<run>/<task>/<output>``.

A stage that is more than one task (``tune``, ``recommend``) names them ``<name>_<part>``.
``tests/test_stages.py`` checks every row against the code, and the README's table against
:func:`markdown_table`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Stage:
    name: str
    module: str  # where run_<name> lives
    config: str  # "module:Class"
    artifact: str  # "<task>/<output>": the stage's main output under a run's folder
    parts: tuple[str, ...] = ()  # extra component functions: <name>_<part>
    pipeline: str = "training"

    @property
    def verb(self) -> str:
        return self.name.replace("_", "-")

    @property
    def components(self) -> tuple[str, ...]:
        """Its component functions in ``components/<name>.py`` (tasks: ``_`` → ``-``)."""
        own = () if self.name == "tune" else (self.name,)  # tune is only its parts
        return own + tuple(f"{self.name}_{part}" for part in self.parts)


STAGES = (
    Stage("synth", "llarapp.data.synth", "llarapp.data.synth:SynthConfig", "synth/slices"),
    Stage("ingest", "llarapp.data.ingest", "llarapp.data.ingest:IngestConfig", "ingest/dataset"),
    Stage("split", "llarapp.data.split", "llarapp.data.split:SplitConfig", "split/splits"),
    Stage("baselines", "llarapp.models.baselines", "llarapp.models.baselines:BaselinesConfig",
          "baselines/recommendations"),
    Stage("text_embed", "llarapp.models.text_embed",
          "llarapp.models.text_embed:TextEmbedConfig", "text-embed/embeddings"),
    Stage("lightgcn", "llarapp.models.lightgcn", "llarapp.models.lightgcn:LightGCNConfig",
          "lightgcn/graph"),
    Stage("cold_mapper", "llarapp.models.cold_mapper",
          "llarapp.models.cold_mapper:ColdMapperConfig", "cold-mapper/mapper"),
    Stage("retrieve", "llarapp.models.retrieve", "llarapp.models.retrieve:RetrieveConfig",
          "retrieve/recommendations"),
    Stage("llara", "llarapp.llara.stage", "llarapp.llara.config:LlaraConfig", "llara/model"),
    Stage("eval_llara", "llarapp.llara.eval_llara", "llarapp.llara.eval_llara:LlaraEvalConfig",
          "eval-llara/evaluation"),
    Stage("export", "llarapp.export.stage", "llarapp.export.config:ExportConfig", "export/bundle"),
    Stage("evaluate", "llarapp.eval.evaluate", "llarapp.eval.evaluate:EvaluateConfig",
          "evaluate/evaluation"),
    Stage("register", "llarapp.registry.register", "llarapp.registry.register:RegisterConfig",
          "register/registration"),
    Stage("deploy", "llarapp.deploy.stage", "llarapp.deploy.config:DeployConfig",
          "deploy/manifest"),
    Stage("tune", "llarapp.models.tune", "llarapp.models.tune:TuneConfig", "tune-summary/study",
          parts=("study", "worker", "summary"), pipeline="tune"),
    Stage("recommend", "llarapp.recommend.batch", "llarapp.recommend.config:RecommendConfig",
          "recommend-merge/recommendations", parts=("bundle", "shards", "merge"), pipeline="batch"),
)


def artifact(name: str) -> str:
    """``<task>/<output>`` of the stage ``name``: where a run folder keeps its main output."""
    for stage in STAGES:
        if stage.name == name:
            return stage.artifact
    raise KeyError(f"no stage {name!r}; stages: {', '.join(s.name for s in STAGES)}")


def markdown_table() -> str:
    """The README's stage table: each stage's module, component, CLI verb, config and
    artifact, so a newcomer finds any of them in one step."""
    def path(module: str) -> str:
        return module.replace(".", "/") + ".py"

    rows = ["| stage | library (`run_<stage>`) | component | CLI verb | config | artifact "
            "(task/output) | pipeline |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for s in STAGES:
        functions = ", ".join(s.components)
        rows.append(f"| {s.name} | `{path(s.module)}` | `components/{s.name}.py` "
                    f"({functions}) | `llarapp {s.verb}` | `configs/{s.name}.yaml` | "
                    f"`{s.artifact}` | {s.pipeline} |")
    return "\n".join(rows)
