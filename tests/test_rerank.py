"""Reranking: the ranker choice and the served-ranking gate (table-driven), candidate
features (co-occurrence from training edges only), prefix questions and LambdaMART."""

import math

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from llarapp.errors import ConfigError
from llarapp.eval.served_gate import served_ranking_gate
from llarapp.rerank.choose import choose_ranker
from llarapp.rerank.features import FEATURES, CatalogueFeatures, candidate_features
from llarapp.rerank.lambdamart import LambdaMart, LambdaMartParams
from llarapp.rerank.lists import prefix_questions, select_mask


@pytest.mark.parametrize("ndcg, expected", [
    ({"retrieval": 0.30, "lambdamart": 0.25, "llara": 0.20}, "retrieval"),
    ({"retrieval": 0.30, "lambdamart": 0.301, "llara": 0.299}, "retrieval"),  # within 1%
    ({"retrieval": 0.30, "lambdamart": 0.36, "llara": 0.28}, "lambdamart"),
    ({"retrieval": 0.30, "lambdamart": 0.36, "llara": 0.358}, "llara"),  # tie: LLaRA
    ({"retrieval": 0.30, "lambdamart": 0.36, "llara": 0.34}, "lambdamart"),
    ({"retrieval": 0.30, "lambdamart": 0.33, "llara": 0.40}, "llara"),
    ({"retrieval": 0.30, "lambdamart": 0.33, "llara": math.nan}, "lambdamart"),
    ({"retrieval": 0.30}, "retrieval"),
    ({"retrieval": 0.0, "lambdamart": 0.0, "llara": 0.0}, "retrieval"),
])
def test_choose_ranker(ndcg, expected):
    chosen, why = choose_ranker(ndcg, tolerance=0.01)
    assert chosen == expected
    assert f"{ndcg['retrieval']:.4f}" in why


def test_choose_ranker_needs_retrieval_and_known_names():
    with pytest.raises(ConfigError, match="retrieval's own validation"):
        choose_ranker({"llara": 0.5}, 0.01)
    with pytest.raises(ConfigError, match="unknown rankers"):
        choose_ranker({"retrieval": 0.3, "gbdt": 0.5}, 0.01)


def selection(served, alone, kind):
    rows = [{"split": "test", "ranker": "retrieval", "ndcg@10": alone},
            {"split": "test", "ranker": kind, "ndcg@10": served},
            {"split": "select", "ranker": kind, "ndcg@10": 1.0}]
    return {"ranker": {"kind": kind, "selection": rows}}


@pytest.mark.parametrize("manifest, passed", [
    (selection(0.31, 0.30, "lambdamart"), True),
    (selection(0.30, 0.30, "llara"), True),
    (selection(0.29, 0.30, "llara"), False),
    (selection(0.10, 0.30, "lambdamart"), False),
    ({"ranker": {"kind": "retrieval", "selection": []}}, True),
    ({"ranker": {"kind": "llara"}}, False),  # no comparison recorded: refused
])
def test_served_ranking_gate(manifest, passed):
    assert served_ranking_gate(manifest)["passed"] is passed


def tiny_tables():
    tracks = pd.DataFrame({"artist_name": ["a", "a", "b", "c", None, "b"],
                           "album_name": ["x", "y", "z", "", "w", "z"]})
    train = pd.DataFrame({"pid": [10, 10, 10, 11, 11, 12, 12, 12],
                          "track_idx": [0, 1, 2, 2, 3, 0, 2, 5]})
    return tracks, train, CatalogueFeatures.from_split(tracks, train)


def test_cooccurrence_counts_shared_training_playlists():
    _, train, tables = tiny_tables()
    candidates = np.array([[2, 3, 5], [1, 5, 3]])
    got = tables.cooccurrence(candidates, [np.array([0]), np.array([2, 3])])
    members = train.groupby("pid")["track_idx"].apply(set)
    expected = [[sum(c in m and s in m for m in members for s in seeds) for c in row]
                for row, seeds in zip(candidates, [[0], [2, 3]], strict=True)]
    np.testing.assert_array_equal(got, expected)


def test_features_are_named_and_match_the_seeds():
    _, _, tables = tiny_tables()
    candidates = np.array([[1, 5, 3], [2, 0, 4]])
    scores = np.array([[3.0, 2.0, 1.0], [5.0, 4.0, 0.0]])
    out = candidate_features(tables, candidates, scores, scores, scores,
                             [np.array([0, 2]), np.array([], np.int64)])
    assert out.shape == (2, 3, len(FEATURES))
    column = {name: out[..., i] for i, name in enumerate(FEATURES)}
    np.testing.assert_array_equal(column["retrieval_rank"][0], [0, 1, 2])
    np.testing.assert_array_equal(column["hybrid_gap"][1], [0, -1, -5])
    np.testing.assert_array_equal(column["artist_share"][0], [0.5, 0.5, 0.0])  # a, b, c
    np.testing.assert_array_equal(column["album_share"][0], [0.0, 0.5, 0.0])  # 5 is album z
    assert column["artist_share"][1].sum() == 0 and column["title_only"][1].all()
    assert column["cold"][1, 2] == 1 and column["cold"][0, 0] == 0  # 4 has no training edge


def test_rank_and_gap_are_the_hybrids_within_any_candidate_order():
    """A shuffled candidate set (protocol (a)) gets the rank and gap its retrieval order
    would give; padding ranks last and does not set the best score."""
    _, _, tables = tiny_tables()
    ordered = np.array([[1, 5, 3, -1]])
    scores = np.array([[3.0, 2.0, 1.0, 9.0]])
    shuffle = np.array([2, 0, 3, 1])
    seeds = [np.array([0, 2])]
    sorted_ = candidate_features(tables, ordered, scores, scores, scores, seeds)
    shuffled = candidate_features(tables, ordered[:, shuffle], scores[:, shuffle],
                                  scores[:, shuffle], scores[:, shuffle], seeds)
    np.testing.assert_array_equal(shuffled, sorted_[:, shuffle])
    rank, gap = FEATURES.index("retrieval_rank"), FEATURES.index("hybrid_gap")
    np.testing.assert_array_equal(sorted_[0, :, rank], [0, 1, 2, 3])
    np.testing.assert_array_equal(sorted_[0, :3, gap], [0, -1, -2])


def test_features_never_read_held_out_edges(synthetic_dataset, synthetic_split):
    """Co-occurrence of a validation playlist's own held-out tracks with its seeds comes
    from training edges only; built with the held-out edges too, it would be larger."""
    val = synthetic_split.heldout_for("val")
    val = val[(val["num_seeds"] > 0) & (val["targets"].map(len) > 0)].head(20)
    seeds = [np.asarray(s, np.int64) for s in val["seeds"]]
    targets = np.stack([np.resize(np.asarray(t, np.int64), 3) for t in val["targets"]])
    tables = CatalogueFeatures.from_split(synthetic_dataset.tracks, synthetic_split.train)
    clean = tables.cooccurrence(targets, [s[-5:] for s in seeds])
    train_members = synthetic_split.train.groupby("pid")["track_idx"].apply(set)
    brute = [[sum(t in m and s in m for m in train_members for s in own[-5:])
              for t in row] for row, own in zip(targets, seeds, strict=True)]
    np.testing.assert_array_equal(clean, brute)
    heldout_edges = val.explode("targets")[["pid", "targets"]].rename(
        columns={"targets": "track_idx"}).astype({"track_idx": np.int64})
    leaky = CatalogueFeatures.from_split(synthetic_dataset.tracks, pd.concat(
        [synthetic_split.train, heldout_edges])).cooccurrence(targets, [s[-5:] for s in seeds])
    assert (leaky > clean).any()


def test_prefix_questions_move_held_out_tracks_to_the_seeds():
    heldout = pd.DataFrame({"pid": [1, 2], "seeds": [np.array([7]), np.array([], np.int64)],
                            "targets": [np.arange(10, 22), np.arange(30, 34)],
                            "num_seeds": [1, 0]})
    out = prefix_questions(heldout, (1, 5, 10))
    assert len(out) == 2 + 2  # pid 1: +1 and +5 (10 would leave 2 < 5); pid 2: none
    widened = out.iloc[3]
    assert widened["seeds"].tolist() == [7, 10, 11, 12, 13, 14]
    assert widened["targets"].tolist() == list(range(15, 22)) and widened["num_seeds"] == 6


def test_select_mask_is_a_fixed_half_by_pid():
    frame = pd.DataFrame({"pid": np.arange(4000)})
    mask = select_mask(frame)
    assert 0.45 < mask.mean() < 0.55
    shuffled = frame.sample(frac=1, random_state=0)
    np.testing.assert_array_equal(select_mask(shuffled), mask[shuffled["pid"].to_numpy()])


def test_lambdamart_learns_a_signal_and_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    features = rng.normal(size=(300, 10, len(FEATURES))).astype(np.float32)
    signal = features[..., FEATURES.index("cooccurrence")]
    labels = (signal > np.quantile(signal, 0.85, axis=1, keepdims=True)).astype(np.int8)
    model = LambdaMart.fit(features[:200], labels[:200], LambdaMartParams(trees=30,
                                                                          min_child_samples=5))
    scores = model.score(features[200:])
    top = np.argmax(scores, axis=1)
    assert labels[200:][np.arange(100), top].mean() > 0.8  # chance: about 0.15
    model.save(tmp_path)
    np.testing.assert_allclose(LambdaMart.load(tmp_path).score(features[200:]), scores)


def test_lambdamart_refuses_data_without_positives():
    with pytest.raises(ConfigError, match="no training playlist has a held-out track"):
        LambdaMart.fit(np.zeros((4, 5, len(FEATURES))), np.zeros((4, 5)), LambdaMartParams())


def test_catalogue_features_save_and_load(tmp_path):
    tracks, _, tables = tiny_tables()
    tables.save(tmp_path)
    loaded = CatalogueFeatures.load(tmp_path, tracks)
    assert (loaded.playlists != tables.playlists).nnz == 0
    np.testing.assert_array_equal(loaded.degree, tables.degree)
    assert sp.issparse(loaded.playlists)


def test_catalogue_features_cover_tracks_added_after_training(tmp_path):
    from llarapp.errors import ArtifactError

    tracks, _, tables = tiny_tables()
    tables.save(tmp_path)
    grown = pd.concat([tracks, pd.DataFrame({"artist_name": ["a"], "album_name": ["q"]})],
                      ignore_index=True)
    loaded = CatalogueFeatures.load(tmp_path, grown)
    assert loaded.playlists.shape[1] == 7 and loaded.degree[6] == 0
    assert loaded.cooccurrence(np.array([[6, 2]]), [np.array([0])]).tolist() == [[0.0, 2.0]]
    with pytest.raises(ArtifactError, match="re-run `llarapp export`"):
        CatalogueFeatures.load(tmp_path, tracks.head(3))


def test_fit_questions_are_the_non_select_slice_of_all_prefix_questions(synthetic_split):
    """eval-llara slices one retrieval of every validation prefix question; LLaRA trains on
    fit_questions: the two must be the same questions in the same order."""
    from llarapp.rerank.lists import fit_questions

    val = synthetic_split.heldout_for("val")
    everything = prefix_questions(val)
    in_select = everything["pid"].isin(val.loc[select_mask(val), "pid"]).to_numpy()
    sliced = everything[~in_select].reset_index(drop=True)
    fit = fit_questions(synthetic_split)
    assert len(fit) == len(sliced) > len(val[~select_mask(val)])
    assert fit["pid"].tolist() == sliced["pid"].tolist()
    assert [s.tolist() for s in fit["seeds"]] == [list(s) for s in sliced["seeds"]]
