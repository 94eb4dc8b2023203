"""Hybrid retrieval: never the seeds, covers cold tracks, λ behaves, stage output."""

import numpy as np
import pandas as pd
import pytest

from llarapp.models.hybrid import HybridParams, HybridScorer, params_for, standardise
from llarapp.models.recommendations import seed_matrix, top_n
from llarapp.models.retrieve import (
    RetrieveConfig,
    best_row,
    merge_slots,
    query_types,
    run_retrieve,
    tune_lambda,
)


def mix(lam: float = 0.5, cold_lambda: float = 2.0, slots: int = 0, end: int = 100):
    return HybridParams(lam, cold_lambda, slots, end)


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
    recs = scorer.recommend(q, model, mix(slots=20), 100)
    assert recs.shape == (len(heldout), 100) and (recs >= 0).all()
    for row, seeds in zip(recs, heldout["seeds"], strict=True):
        assert not set(row) & set(seeds)


def test_hybrid_covers_cold_tracks_but_lightgcn_alone_cannot(
        scorer, text_embeddings, heldout, synthetic_dataset, graph_embeddings):
    cold = ~graph_embeddings.warm
    q = _queries(scorer, text_embeddings, heldout, synthetic_dataset.num_tracks)
    hybrid = scorer.recommend(q, "hybrid", mix(slots=10), 500)
    assert cold[hybrid].any()
    assert not cold[scorer.recommend(q, "lightgcn", None, 500)].any()


@pytest.mark.parametrize("slots, end", [(0, 100), (10, 100), (25, 40), (5, 5), (3, 200)])
def test_cold_slots_sit_just_above_their_end_and_nowhere_else(
        slots, end, scorer, text_embeddings, heldout, synthetic_dataset, graph_embeddings):
    cold = ~graph_embeddings.warm
    q = _queries(scorer, text_embeddings, heldout, synthetic_dataset.num_tracks)
    recs = scorer.recommend(q, "hybrid", mix(slots=slots, end=end), 300)
    expected = np.zeros(300, bool)
    expected[end - slots:end] = True
    assert (cold[recs] == expected).all()


def test_hybrid_scores_rank_as_the_merge_of_warm_and_cold_lists(
        scorer, text_embeddings, heldout, synthetic_dataset, graph_embeddings):
    """What retrieve tunes (list merges) is what serving ranks (scores)."""
    warm = graph_embeddings.warm
    q = _queries(scorer, text_embeddings, heldout, synthetic_dataset.num_tracks)
    graph, text = parts = scorer.components(q)
    merged = merge_slots(top_n(np.where(warm, graph + 0.5 * text, -np.inf), q.seeds, 200),
                         top_n(np.where(warm, -np.inf, graph + 2.0 * text), q.seeds, 20),
                         20, 60, 200)
    actual = scorer.recommend(q, "hybrid", mix(slots=20, end=60), 200, parts)
    # the two paths round the same sums differently, so only near-ties may trade places
    rows, cols = np.nonzero(actual != merged)
    assert len(rows) <= 0.001 * merged.size
    score = np.where(warm, graph + 0.5 * text, graph + 2.0 * text)
    np.testing.assert_allclose(score[rows, actual[rows, cols]], score[rows, merged[rows, cols]],
                               rtol=1e-5, atol=1e-6)


def test_each_row_gets_its_query_type_s_mix(scorer, text_embeddings, heldout,
                                            synthetic_dataset, graph_embeddings):
    cold = ~graph_embeddings.warm
    q = _queries(scorer, text_embeddings, heldout, synthetic_dataset.num_tracks)
    kinds = query_types(heldout)
    params = params_for({"seeded": mix(slots=0).to_dict(),
                         "title_only": mix(slots=10, end=20).to_dict()}, kinds)
    recs = scorer.recommend(q, "hybrid", params, 50)
    assert (cold[recs].sum(axis=1) == np.where(kinds == "title_only", 10, 0)).all()


def test_lambda_zero_ranks_by_graph_and_large_lambda_by_text(
        scorer, text_embeddings, heldout, synthetic_dataset):
    q = _queries(scorer, text_embeddings, heldout, synthetic_dataset.num_tracks)
    graph, text = scorer.components(q)
    np.testing.assert_array_equal(scorer.recommend(q, "hybrid", mix(0.0), 50, (graph, text)),
                                  scorer.recommend(q, "hybrid", mix(0.0), 50, (graph, 0 * text)))
    # without cold slots the hybrid lists warm tracks only
    text_only = top_n(np.where(scorer.warm, text, -np.inf), q.seeds, 10)
    mostly_text = scorer.recommend(q, "hybrid", mix(1e6), 10, (graph, text))
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


def test_stage_tunes_the_mix_per_query_type(
        synthetic_dataset, synthetic_split, text_embeddings, graph_embeddings, cold_mapper,
        tmp_path, scorer):
    cfg = RetrieveConfig(lambdas=[0.0, 0.5, 2.0], cold_lambdas=[2.0], cold_slot_counts=[0, 20])
    manifest = run_retrieve(cfg, synthetic_dataset, synthetic_split, text_embeddings,
                            graph_embeddings, cold_mapper, tmp_path / "recs")
    tuning = pd.read_csv(tmp_path / "recs" / "lambda_tuning.csv")
    assert sorted(tuning["query_type"].unique()) == ["seeded", "title_only"]
    val = synthetic_split.heldout_for("val")
    for query_type, table in tuning.groupby("query_type"):
        assert len(table) == 6
        # cold_budget: the best cold NDCG within 2% warm NDCG and 7.5% warm R-precision of
        # both LightGCN alone and the same λ without cold slots, ties to the better warm NDCG
        no_slots = table[table["cold_slots"] == 0].set_index("lambda")
        np.testing.assert_allclose(table["no_slots_ndcg_warm"],
                                   no_slots.loc[table["lambda"], "ndcg_warm"])
        np.testing.assert_allclose(table["no_slots_r_precision_warm"],
                                   no_slots.loc[table["lambda"], "r_precision_warm"])
        within = table[
            (table["ndcg_warm"] >= 0.98 * table["lightgcn_ndcg_warm"])
            & (table["ndcg_warm"] >= 0.98 * table["no_slots_ndcg_warm"])
            & (table["r_precision_warm"] >= 0.925 * table["lightgcn_r_precision_warm"])
            & (table["r_precision_warm"] >= 0.925 * table["no_slots_r_precision_warm"])]
        assert len(within), "λ = 0 without cold slots ranks warm tracks as LightGCN does"
        best = within.sort_values(["ndcg_cold", "ndcg_warm"]).iloc[-1]
        chosen = manifest["hybrid_params"][query_type]
        assert chosen == {"lambda": best["lambda"], "cold_lambda": best["cold_lambda"],
                          "cold_slots": best["cold_slots"], "cold_slots_end": 100}
        np.testing.assert_allclose(best["balanced_ndcg"],
                                   (best["ndcg_warm"] + best["ndcg_cold"]) / 2)
        subset = val[query_types(val) == query_type]
        again = tune_lambda(scorer, text_embeddings, subset, [best["lambda"]],
                            synthetic_dataset.num_tracks, 7, [best["cold_lambda"]],
                            [int(best["cold_slots"])])
        # float32 products round differently per batch size: near-ties may swap
        assert again["balanced_ndcg"].iloc[0] == pytest.approx(best["balanced_ndcg"], rel=1e-4)
    recs = pd.read_parquet(tmp_path / "recs" / "recommendations.parquet")
    assert set(recs["model"]) == {"lightgcn", "text", "hybrid"}
    assert len(recs) == 3 * len(synthetic_split.heldout)


def test_fixed_lambda_skips_tuning(synthetic_dataset, synthetic_split, text_embeddings,
                                   graph_embeddings, cold_mapper, tmp_path):
    cfg = RetrieveConfig(lam=0.3, cold_lambda=1.0, cold_slots=5, models=["hybrid"],
                         splits=["test"])
    manifest = run_retrieve(cfg, synthetic_dataset, synthetic_split, text_embeddings,
                            graph_embeddings, cold_mapper, tmp_path / "recs")
    assert manifest["hybrid_params"]["title_only"] == {"lambda": 0.3, "cold_lambda": 1.0,
                                                       "cold_slots": 5, "cold_slots_end": 100}
    assert not (tmp_path / "recs" / "lambda_tuning.csv").exists()


TUNING = pd.DataFrame({  # LightGCN alone: warm NDCG 0.50, warm R-precision 0.10
    "lambda": [0.0, 0.5, 1.0, 1.0], "cold_slots": [0, 10, 20, 40],
    "ndcg_warm": [0.50, 0.495, 0.48, 0.40], "ndcg_cold": [0.01, 0.05, 0.10, 0.30],
    "r_precision_warm": [0.10, 0.097, 0.093, 0.08],
    "lightgcn_ndcg_warm": [0.50] * 4, "lightgcn_r_precision_warm": [0.10] * 4,
    # each λ's list without cold slots (never below its rows: slots only cost warm
    # accuracy); here never better than LightGCN, so it never binds
    "no_slots_ndcg_warm": [0.50, 0.50, 0.49, 0.49],
    "no_slots_r_precision_warm": [0.10, 0.10, 0.095, 0.095]})
TUNING["balanced_ndcg"] = (TUNING["ndcg_warm"] + TUNING["ndcg_cold"]) / 2
# Text lifts λ = 1's warm accuracy 10% above LightGCN's: the slots may not spend that lift
LIFTED = TUNING.assign(no_slots_ndcg_warm=[0.50, 0.50, 0.55, 0.55],
                       no_slots_r_precision_warm=[0.10, 0.10, 0.11, 0.11])


@pytest.mark.parametrize("table, metric, budget, r_precision_budget, chosen_slots", [
    (TUNING, "cold_budget", 0.02, 0.05, 10),  # NDCG 0.495 is within 2% of 0.50; 0.48 is not
    (TUNING, "cold_budget", 0.05, 0.05, 10),  # R-precision 0.093 is not within 5% of 0.10
    (TUNING, "cold_budget", 0.05, 0.10, 20),  # looser budgets buy more cold NDCG
    (TUNING, "cold_budget", 0.02, 0.02, 0),  # R-precision 0.097 is not within 2%
    (TUNING, "cold_budget", 0.0, 0.05, 0),  # no budget: LightGCN's warm accuracy
    (TUNING, "balanced_ndcg", 0.02, 0.05, 40),  # the budgets are ignored
    # 20 slots at λ = 1 are within budget of LightGCN but cost 12.7% of λ = 1's own warm
    # NDCG (0.48 against 0.55) and 15.5% of its R-precision (0.093 against 0.11)
    (LIFTED, "cold_budget", 0.05, 0.10, 10),
    (LIFTED, "cold_budget", 0.15, 0.20, 20),  # a budget that covers that cost
])
def test_best_row_trades_warm_accuracy_for_cold_reach_within_the_budget(
        table, metric, budget, r_precision_budget, chosen_slots):
    assert best_row(table, metric, budget, r_precision_budget)["cold_slots"] == chosen_slots


def test_best_row_breaks_cold_ties_by_warm_ndcg():
    tied = TUNING.assign(ndcg_cold=[0.0, 0.05, 0.05, 0.05])
    assert best_row(tied, "cold_budget", 0.05, 0.10)["lambda"] == 0.5  # 0.495 > 0.48


def test_best_row_falls_back_to_warm_accuracy_when_nothing_is_within_budget():
    worse = TUNING.assign(lightgcn_ndcg_warm=0.9)
    assert best_row(worse, "cold_budget", 0.02, 0.05)["cold_slots"] == 0


def test_cold_budget_is_validated():
    from llarapp.errors import ConfigError

    with pytest.raises(ConfigError, match="cold_budget"):
        RetrieveConfig(cold_budget=1.5)
    with pytest.raises(ConfigError, match="cold_budget_r_precision"):
        RetrieveConfig(cold_budget_r_precision=-0.1)
