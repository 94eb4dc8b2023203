import numpy as np
import pandas as pd
import pytest

from llarapp.models.baselines import BaselineRecommender, BaselinesConfig, run_baselines
from llarapp.models.recommendations import seed_matrix, title_tokens, top_n

# Two rock playlists share tracks 0-2, two jazz playlists share tracks 3-5.
TRAIN = pd.DataFrame({"pid": [1, 1, 1, 2, 2, 3, 3, 4, 4, 4],
                      "track_idx": [0, 1, 2, 0, 1, 3, 4, 3, 4, 5]})
NAMES = pd.Series({1: "Rock Classics", 2: "rock party", 3: "Jazz", 4: "jazz at night"})
NUM_ITEMS = 7  # track 6 is never played in training (cold)


@pytest.fixture()
def model():
    return BaselineRecommender(TRAIN, NAMES, NUM_ITEMS)


def recommend(model, name, seeds, titles, n=NUM_ITEMS):
    return model.recommend(name, seed_matrix(pd.Series(seeds), NUM_ITEMS), titles, n)


def test_popularity_ranks_by_training_count_and_skips_seeds(model):
    recs = recommend(model, "popularity", [[0]], [None])[0]
    assert set(recs[:3]) == {1, 3, 4}  # the remaining tracks played twice
    assert 0 not in recs


def test_item_knn_follows_co_occurrence(model):
    recs = recommend(model, "item_knn", [[0]], [None])[0]
    assert recs[:2].tolist() == [1, 2]  # 1 co-occurs with 0 twice, 2 once
    assert 0 not in recs and -1 in recs  # the seed is excluded, leaving a pad


def test_title_only_falls_back_to_playlists_sharing_title_words(model):
    recs = recommend(model, "item_knn", [[]], ["Late Night JAZZ"])[0]
    assert set(recs[:3]) == {3, 4, 5}


def test_unknown_title_words_fall_back_to_global_popularity(model):
    recs = recommend(model, "item_knn", [[]], ["zzz"])[0]
    popular = recommend(model, "popularity", [[]], [None])[0]
    assert recs.tolist() == popular.tolist()


def test_similarity_alpha_changes_the_scores():
    cosine = BaselineRecommender(TRAIN, NAMES, NUM_ITEMS, alpha=0.5)
    asymmetric = BaselineRecommender(TRAIN, NAMES, NUM_ITEMS, alpha=0.9)
    seeds = seed_matrix(pd.Series([[3]]), NUM_ITEMS)
    assert not np.allclose(cosine.knn_scores(seeds), asymmetric.knn_scores(seeds))


def test_top_n_orders_excludes_and_pads():
    scores = np.array([[0.1, 0.5, 0.3, 0.9]], dtype=np.float32)
    exclude = seed_matrix(pd.Series([[3]]), 4)
    assert top_n(scores, exclude, 4).tolist() == [[1, 2, 0, -1]]


@pytest.mark.parametrize("title, tokens", [("Chill  Vibes ✨", ["chill", "vibes"]),
                                           ("R&B", ["r", "b"]), (None, [])])
def test_title_tokens(title, tokens):
    assert title_tokens(title) == tokens


def test_stage_writes_500_recommendations_per_heldout_playlist(
        synthetic_dataset, synthetic_split, tmp_path):
    manifest = run_baselines(BaselinesConfig(), synthetic_dataset, synthetic_split,
                             tmp_path / "recs")
    recs = pd.read_parquet(tmp_path / "recs" / "recommendations.parquet")
    assert manifest["rows"] == len(recs) == 2 * len(synthetic_split.heldout)
    assert recs["recs"].map(len).eq(500).all()
    merged = recs.merge(synthetic_split.heldout[["pid", "seeds"]], on="pid")
    assert not any(set(r) & set(s) for r, s in zip(merged["recs"], merged["seeds"], strict=True))
