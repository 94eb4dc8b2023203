"""The same seed gives the same metrics, through graph, mapper, retrieval and evaluation."""

import json

import pytest

from llarapp.eval.evaluate import EvaluateConfig, run_evaluate
from llarapp.models.cold_mapper import ColdMapper, ColdMapperConfig, run_cold_mapper
from llarapp.models.graph import GraphEmbeddings
from llarapp.models.lightgcn import LightGCNConfig, run_lightgcn
from llarapp.models.retrieve import RetrieveConfig, run_retrieve
from tests.conftest import FAST_GRAPH


def _metrics(root, seed, dataset, split, text) -> dict:
    run_lightgcn(LightGCNConfig(**{**FAST_GRAPH, "epochs": 2, "seed": seed}), dataset, split,
                 root / "graph")
    graph = GraphEmbeddings.load(root / "graph").vectors
    run_cold_mapper(ColdMapperConfig(epochs=2, seed=seed, device="cpu"), dataset, split, text,
                    graph, root / "mapper")
    run_retrieve(RetrieveConfig(lambdas=[0.0, 1.0]), dataset, split, text, graph,
                 ColdMapper.load(root / "mapper"), root / "recs")
    run_evaluate(EvaluateConfig(track=False), dataset, split, [root / "recs"], root / "eval")
    return json.loads((root / "eval" / "metrics.json").read_text())["summary"]


@pytest.mark.slow
def test_same_seed_same_metrics_other_seed_other_metrics(synthetic_dataset, synthetic_split,
                                                         text_embeddings, tmp_path):
    args = (synthetic_dataset, synthetic_split, text_embeddings)
    first = _metrics(tmp_path / "a", 5, *args)
    assert first == _metrics(tmp_path / "b", 5, *args)
    assert first != _metrics(tmp_path / "c", 6, *args)
