from dataclasses import dataclass, field

import pytest

from llarapp.config import StageConfig, parse_overrides, require
from llarapp.data.ingest import IngestConfig
from llarapp.data.split import SplitConfig
from llarapp.data.synth import SynthConfig
from llarapp.errors import ConfigError


@dataclass
class ToyConfig(StageConfig):
    size: int = 3
    rate: float = 0.5
    name: str = "x"
    flag: bool = False
    tags: list[str] = field(default_factory=list)
    limit: int | None = None

    def validate(self) -> None:
        require(self.size > 0, "size must be positive")


@pytest.mark.parametrize("data, expected", [
    ({"size": "7"}, {"size": 7}),
    ({"rate": 2}, {"rate": 2.0}),
    ({"flag": "true"}, {"flag": True}),
    ({"tags": "a, b"}, {"tags": ["a", "b"]}),
    ({"limit": None}, {"limit": None}),
    ({"limit": "4"}, {"limit": 4}),
])
def test_values_are_coerced_to_field_types(data, expected):
    cfg = ToyConfig.from_dict(data)
    for key, value in expected.items():
        assert getattr(cfg, key) == value


@pytest.mark.parametrize("data, message", [
    ({"size": "many"}, "size: expected an integer"),
    ({"flag": "maybe"}, "flag: expected true or false"),
    ({"size": 0}, "size must be positive"),
    ({"rate": True}, "rate: expected a number"),
])
def test_invalid_values_raise_config_error(data, message):
    with pytest.raises(ConfigError, match=message):
        ToyConfig.from_dict(data)


def test_unknown_key_names_the_key_and_lists_valid_keys():
    with pytest.raises(ConfigError) as info:
        ToyConfig.from_dict({"sise": 3})
    assert "'sise'" in str(info.value)
    assert "valid keys: size, rate, name, flag, tags, limit" in str(info.value)


def test_yaml_then_values_then_overrides(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text("size: 5\nname: from-yaml\nrate: 0.1\n")
    cfg = ToyConfig.load(path, ["rate=0.9", "flag=yes"], name="from-kwargs")
    assert (cfg.size, cfg.name, cfg.rate, cfg.flag) == (5, "from-kwargs", 0.9, True)


def test_unknown_key_in_yaml_is_an_error(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text("size: 5\nbogus: 1\n")
    with pytest.raises(ConfigError, match="unknown key 'bogus'"):
        ToyConfig.from_yaml(path)


@pytest.mark.parametrize("items, error", [(["novalue"], "key=value"), (["=3"], "key=value")])
def test_malformed_overrides(items, error):
    with pytest.raises(ConfigError, match=error):
        parse_overrides(items)


@pytest.mark.parametrize("cls, bad", [
    (SynthConfig, {"num_playlists": 0}),
    (SynthConfig, {"same_artist_prob": 1.5}),
    (IngestConfig, {"workers": -1}),
    (SplitConfig, {"categories": ["first_3"]}),
    (SplitConfig, {"val_fraction": 0.7}),
])
def test_stage_configs_validate_ranges(cls, bad):
    with pytest.raises(ConfigError):
        cls.from_dict(bad)


def test_round_trip_through_yaml(tmp_path):
    cfg = SplitConfig(seed=9, categories=["first_1", "title_only"])
    path = tmp_path / "split.yaml"
    path.write_text(cfg.to_yaml())
    assert SplitConfig.from_yaml(path) == cfg


CONFIG_FILES = {
    "synth.yaml": "llarapp.data.synth:SynthConfig",
    "ingest.yaml": "llarapp.data.ingest:IngestConfig",
    "split.yaml": "llarapp.data.split:SplitConfig",
    "baselines.yaml": "llarapp.models.baselines:BaselinesConfig",
    "text_embed.yaml": "llarapp.models.text_embed:TextEmbedConfig",
    "lightgcn.yaml": "llarapp.models.lightgcn:LightGCNConfig",
    "cold_mapper.yaml": "llarapp.models.cold_mapper:ColdMapperConfig",
    "retrieve.yaml": "llarapp.models.retrieve:RetrieveConfig",
    "evaluate.yaml": "llarapp.eval.evaluate:EvaluateConfig",
    "llara.yaml": "llarapp.llara.config:LlaraConfig",
    "eval_llara.yaml": "llarapp.llara.eval_llara:LlaraEvalConfig",
    "export.yaml": "llarapp.export.config:ExportConfig",
    "tune.yaml": "llarapp.models.tune:TuneConfig",
    "register.yaml": "llarapp.registry.register:RegisterConfig",
    "deploy.yaml": "llarapp.deploy.config:DeployConfig",
    "platform.yaml": "pipelines.platform:PlatformConfig",
    "serve.yaml": "llarapp.serving.config:ServeConfig",
    "recommend.yaml": "llarapp.recommend.config:RecommendConfig",
}


def test_every_shipped_config_loads_into_its_class():
    import importlib
    from pathlib import Path

    folder = Path(__file__).parent.parent / "configs"
    assert {p.name for p in folder.glob("*.yaml")} == set(CONFIG_FILES)
    for name, target in CONFIG_FILES.items():
        module, cls = target.split(":")
        config = getattr(importlib.import_module(module), cls).from_yaml(folder / name)
        assert config == type(config)(), f"{name} differs from the defaults"


def test_mappings_are_coerced_and_checked():
    from pipelines.platform import PlatformConfig

    cfg = PlatformConfig.from_dict({"resources": {"llara": [16, "64Gi"]}})
    assert cfg.resources == {"llara": ["16", "64Gi"]}
    with pytest.raises(ConfigError, match="expected a mapping"):
        PlatformConfig.from_dict({"resources": ["llara"]})
    with pytest.raises(ConfigError, match=r"resources.llara must be \[cpu, memory\]"):
        PlatformConfig.from_dict({"resources": {"llara": ["16"]}})
