"""Hybrid retrieval: never the seeds, covers cold tracks, λ behaves, stage output."""

import numpy as np
import pandas as pd
import pytest

from llarapp.models.hybrid import HybridScorer, standardise
from llarapp.models.retrieval import seed_matrix
from llarapp.models.retrieve import (
    RetrieveConfig,
    best_row,
    query_types,
    run_retrieve,
    tune_lambda,
)


@pytest.fixture(scope="module")
def scorer(text_embeddings, graph_embeddings, cold_mapper):
    return HybridScorer.from_artifacts(text_embeddings, graph_embeddings, cold_mapper)


@pytest.fixture(scope="module")
def heldout(synthetic_split):
    return synthetic_split.heldout_for("test")


def _queries(scorer, text, heldout, num_items):
    return scorer.queries(seed_matrix(heldout["seeds"], num_items),
                          text.titles(heldout["pid"].to_numpy()))


@pytest.mark.parametrize("model", ["lightgcn", "text", "hybrid"])
def test_recommendations_never_contain_seeds(model, scorer, text_embeddings, heldout,
                                             synthetic_dataset):
    q = _queries(scorer, text_embeddings, heldout, synthetic_dataset.num_tracks)
    recs = scorer.recommend(q, model, 0.5, 100)
    assert recs.shape == (len(heldout), 100) and (recs >= 0).all()
    for row, seeds in zip(recs, heldout["seeds"], strict=True):
        assert not set(row) & set(seeds)


def test_hybrid_covers_cold_tracks_but_lightgcn_alone_cannot(
        scorer, text_embeddings, heldout, synthetic_dataset, graph_embeddings):
    cold = ~graph_embeddings.warm
    q = _queries(scorer, text_embeddings, heldout, synthetic_dataset.num_tracks)
    hybrid = scorer.recommend(q, "hybrid", 1.0, 500)
    assert cold[hybrid].any()
    assert not cold[scorer.recommend(q, "lightgcn", 0.0, 500)].any()


def test_cold_offset_promotes_cold_tracks(scorer, text_embeddings, heldout, synthetic_dataset,
                                          graph_embeddings):
    cold = ~graph_embeddings.warm
    q = _queries(scorer, text_embeddings, heldout, synthetic_dataset.num_tracks)
    parts = scorer.components(q)
    shares = [cold[scorer.recommend(q, "hybrid", 0.5, 100, parts, beta)].mean()
              for beta in (-1.0, 0.0, 1.0, 3.0)]
    assert shares == sorted(shares) and shares[-1] > shares[0]


def test_lambda_zero_ranks_by_graph_and_large_lambda_by_text(
        scorer, text_embeddings, heldout, synthetic_dataset):
    q = _queries(scorer, text_embeddings, heldout, synthetic_dataset.num_tracks)
    graph, text = scorer.components(q)
    np.testing.assert_array_equal(scorer.recommend(q, "hybrid", 0.0, 50, (graph, text)),
                                  scorer.recommend(q, "hybrid", 0.0, 50, (graph, 0 * text)))
    text_only = scorer.recommend(q, "text", 0.0, 10, (graph, text))
    mostly_text = scorer.recommend(q, "hybrid", 1e6, 10, (graph, text))
    assert (text_only == mostly_text).mean() > 0.95


def test_title_only_playlists_get_a_graph_query(scorer, text_embeddings, heldout,
                                                synthetic_dataset):
    title_only = heldout[heldout["num_seeds"] == 0]
    assert len(title_only)
    q = _queries(scorer, text_embeddings, title_only, synthetic_dataset.num_tracks)
    assert np.abs(q.graph).sum(axis=1).min() > 0


def test_standardise_rows():
    scores = standardise(np.array([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0]]))
    np.testing.assert_allclose(scores[0], [-1.2247449, 0.0, 1.2247449], atol=1e-6)
    assert np.isfinite(scores[1]).all()


def test_stage_tunes_lambda_and_offset_per_query_type(
        synthetic_dataset, synthetic_split, text_embeddings, graph_embeddings, cold_mapper,
        tmp_path, scorer):
    cfg = RetrieveConfig(lambdas=[0.0, 0.5, 2.0], cold_offsets=[0.0, 1.0])
    manifest = run_retrieve(cfg, synthetic_dataset, synthetic_split, text_embeddings,
                            graph_embeddings, cold_mapper, tmp_path / "recs")
    tuning = pd.read_csv(tmp_path / "recs" / "lambda_tuning.csv")
    assert sorted(tuning["query_type"].unique()) == ["seeded", "title_only"]
    val = synthetic_split.heldout_for("val")
    for query_type, table in tuning.groupby("query_type"):
        assert len(table) == 6
        # cold_budget: the best cold NDCG within 2% warm NDCG of LightGCN alone
        within = table[table["ndcg_warm"] >= 0.98 * table["lightgcn_ndcg_warm"]]
        assert len(within), "λ = 0, β = 0 ranks warm tracks as LightGCN does"
        key = "ndcg_cold" if (within["ndcg_cold"] > 0).any() else "ndcg_warm"
        best = within.loc[within[key].idxmax()]
        chosen = manifest["hybrid_params"][query_type]
        assert (chosen["lambda"], chosen["cold_offset"]) == (best["lambda"], best["cold_offset"])
        np.testing.assert_allclose(best["balanced_ndcg"],
                                   (best["ndcg_warm"] + best["ndcg_cold"]) / 2)
        subset = val[query_types(val) == query_type]
        again = tune_lambda(scorer, text_embeddings, subset, [best["lambda"]],
                            synthetic_dataset.num_tracks, 7, [best["cold_offset"]])
        # float32 products round differently per batch size: near-ties may swap
        assert again["balanced_ndcg"].iloc[0] == pytest.approx(best["balanced_ndcg"], rel=1e-4)
    recs = pd.read_parquet(tmp_path / "recs" / "recommendations.parquet")
    assert set(recs["model"]) == {"lightgcn", "text", "hybrid"}
    assert len(recs) == 3 * len(synthetic_split.heldout)


def test_fixed_lambda_skips_tuning(synthetic_dataset, synthetic_split, text_embeddings,
                                   graph_embeddings, cold_mapper, tmp_path):
    cfg = RetrieveConfig(lam=0.3, cold_offset=0.2, models=["hybrid"], splits=["test"])
    manifest = run_retrieve(cfg, synthetic_dataset, synthetic_split, text_embeddings,
                            graph_embeddings, cold_mapper, tmp_path / "recs")
    assert manifest["hybrid_params"]["title_only"] == {"lambda": 0.3, "cold_offset": 0.2}
    assert not (tmp_path / "recs" / "lambda_tuning.csv").exists()


TUNING = pd.DataFrame({  # λ, β, warm NDCG, cold NDCG; LightGCN alone: warm NDCG 0.50
    "lambda": [0.0, 0.5, 1.0, 1.0], "cold_offset": [-1.0, 0.0, 0.5, 1.0],
    "ndcg_warm": [0.50, 0.495, 0.48, 0.40], "ndcg_cold": [0.01, 0.05, 0.10, 0.30],
    "lightgcn_ndcg_warm": [0.50] * 4})
TUNING["balanced_ndcg"] = (TUNING["ndcg_warm"] + TUNING["ndcg_cold"]) / 2


@pytest.mark.parametrize("metric, budget, chosen_offset", [
    ("cold_budget", 0.02, 0.0),  # 0.495 is within 2% of 0.50; 0.48 is not
    ("cold_budget", 0.05, 0.5),  # a looser budget buys more cold NDCG
    ("cold_budget", 0.0, -1.0),  # no budget: LightGCN's warm accuracy
    ("balanced_ndcg", 0.02, 1.0),  # the budget is ignored
])
def test_best_row_trades_warm_accuracy_for_cold_reach_within_the_budget(metric, budget,
                                                                       chosen_offset):
    assert best_row(TUNING, metric, budget)["cold_offset"] == chosen_offset


def test_best_row_falls_back_to_warm_accuracy_when_nothing_is_within_budget():
    worse = TUNING.assign(lightgcn_ndcg_warm=0.9)
    assert best_row(worse, "cold_budget", 0.02)["cold_offset"] == -1.0


def test_cold_budget_is_validated():
    from llarapp.errors import ConfigError

    with pytest.raises(ConfigError, match="cold_budget"):
        RetrieveConfig(cold_budget=1.5)
