"""Cold mapper shapes and determinism; weak tag labels; numpy forward pass."""

import numpy as np
import pandas as pd
import pytest
import torch

from llarapp.models.cold_mapper import ColdMapperConfig, fit_mappers, holdout_mask
from llarapp.models.mlp import FitConfig, apply_numpy, fit_mlp, mlp, predict, to_numpy_weights
from llarapp.models.tags import top_tags, weak_labels

CPU = torch.device("cpu")


def test_mappers_shapes_and_determinism(synthetic_dataset, text_embeddings, graph_embeddings):
    cfg = ColdMapperConfig(epochs=3, device="cpu")
    holdout = holdout_mask(synthetic_dataset.num_tracks, cfg.holdout_fraction, cfg.seed)
    first = fit_mappers(cfg, text_embeddings, graph_embeddings, holdout, CPU)
    second = fit_mappers(cfg, text_embeddings, graph_embeddings, holdout, CPU)
    items = predict(first.item.model, text_embeddings.items, CPU)
    titles = predict(first.title.model, text_embeddings.titles(np.array([0, 1])), CPU)
    graph_dim = graph_embeddings.items.shape[1]
    assert items.shape == (synthetic_dataset.num_tracks, graph_dim)
    assert titles.shape == (2, graph_dim)
    np.testing.assert_array_equal(items, predict(second.item.model, text_embeddings.items, CPU))
    assert first.holdout_cosine == second.holdout_cosine
    assert first.holdout_cosine["item_mlp"] > 0.0  # learnt something for unseen tracks
    assert first.title_vectors(text_embeddings.titles(np.array([0, 1])), CPU).shape == (
        2, graph_dim)


def test_stage_gives_every_track_a_graph_vector_and_tags(cold_mapper, graph_embeddings,
                                                         synthetic_dataset):
    item_graph = cold_mapper.item_graph
    warm = graph_embeddings.warm
    assert item_graph.shape == graph_embeddings.items.shape
    np.testing.assert_array_equal(item_graph[warm], graph_embeddings.items[warm])
    assert np.abs(item_graph[~warm]).sum(axis=1).min() > 0  # cold rows were mapped
    catalogue = cold_mapper.catalogue
    assert len(catalogue) == synthetic_dataset.num_tracks
    assert catalogue["warm"].tolist() == warm.tolist()
    report = pd.read_csv(cold_mapper.folder / "tag_report.csv")
    assert {"tag", "precision", "base_rate", "heldout_tracks"} <= set(report.columns)
    vocab = set(cold_mapper.manifest["tags"]["vocab"])
    assert all(set(tags) <= vocab for tags in catalogue["tags"])


def test_title_neighbours_weight_similar_titles():
    from llarapp.models.graph import TitleNeighbours

    titles = np.eye(3, dtype=np.float32)  # three training playlists, orthogonal titles
    vectors = np.array([[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]], dtype=np.float32)
    knn = TitleNeighbours(titles, vectors, k=2, temperature=0.05)
    exact = knn.query(np.array([[1.0, 0.0, 0.0]], dtype=np.float32))[0]
    np.testing.assert_allclose(exact, [1.0, 0.0], atol=1e-6)  # an exact title match wins
    between = knn.query(np.array([[0.6, 0.6, 0.0]], dtype=np.float32))[0]
    np.testing.assert_allclose(between, [0.5, 0.5], atol=1e-6)  # ties share the weight
    assert TitleNeighbours(titles, vectors, k=10).query(titles).shape == (3, 2)  # k > n


def test_numpy_forward_matches_torch():
    torch.manual_seed(0)
    model = mlp(6, 5, 3)
    x = np.random.default_rng(0).normal(size=(4, 6)).astype(np.float32)
    np.testing.assert_allclose(apply_numpy(to_numpy_weights(model), x),
                               predict(model, x, CPU), atol=1e-5)


def test_fit_keeps_the_best_validation_epoch():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 4)).astype(np.float32)
    y = x @ rng.normal(size=(4, 2)).astype(np.float32)
    val = np.arange(200) % 5 == 0
    fitted = fit_mlp(x, y, val, torch.nn.functional.mse_loss,
                     FitConfig(hidden=16, epochs=8, batch_size=32), CPU, "test")
    history = fitted.history
    assert fitted.best_epoch == int(history.loc[history["val_loss"].idxmin(), "epoch"])
    assert history["val_loss"].min() < history["val_loss"].iloc[0]


# Track 0 is in playlists 1-4: "country" in 3 of 4 titles, "chill" in 2, "roads"/"gold" in 1.
# Track 1 is in 1, 4, 5: each word in 1 of 3. Track 2 only in 6.
TAG_TRAIN = pd.DataFrame({"pid": [1, 2, 3, 4, 1, 4, 5, 6],
                          "track_idx": [0, 0, 0, 0, 1, 1, 1, 2]})
TAG_NAMES = pd.Series({1: "Country Roads", 2: "country gold", 3: "COUNTRY & chill",
                       4: "my chill playlist", 5: "workout", 6: "workout"})


@pytest.mark.parametrize("track, min_share, expected", [
    (0, 0.6, {"country"}),
    (0, 0.5, {"country", "chill"}),
    (0, 0.2, {"country", "chill", "roads", "gold"}),
    (1, 0.5, set()),
    (1, 0.3, {"country", "roads", "chill", "workout"}),
    (2, 0.5, {"workout"}),
    (3, 0.1, set()),  # never in a training playlist
])
def test_weak_labels(track, min_share, expected):
    weak = weak_labels(TAG_TRAIN, TAG_NAMES, 4, vocab_size=10, min_share=min_share,
                       min_count=1)
    assert "my" not in weak.vocab and "playlist" not in weak.vocab  # stop words
    assert {weak.vocab[i] for i in weak.labels[track].indices} == expected
    assert weak.labelled.tolist() == [True, True, True, False]


def test_top_tags_respects_threshold_and_limit():
    probs = np.array([[0.9, 0.2, 0.6, 0.7], [0.1, 0.2, 0.3, 0.4]])
    names, scores = top_tags(probs, ["a", "b", "c", "d"], threshold=0.5, limit=2)
    assert names == [["a", "d"], []]
    assert scores == [[0.9, 0.7], []]
