"""LightGCN: adjacency, the symmetric backward, fold-in, early stopping, determinism."""

import numpy as np
import pandas as pd
import pytest
import torch

from llarapp.models.graph import GraphEmbeddings, fold_in
from llarapp.models.lightgcn import LightGCNConfig, LightGCNTrainer, Validation, run_lightgcn
from llarapp.models.propagation import (
    BipartiteAdjacency,
    build_model,
    layer_embeddings,
    normalized_adjacency,
    propagate,
)
from llarapp.models.ranking_loss import hardest_negatives
from llarapp.models.recommendations import seed_matrix
from tests.conftest import FAST_GRAPH

# Playlists 10, 11, 12 over tracks 0-4; track 5 is cold (no training edges).
TRAIN = pd.DataFrame({"pid": [10, 10, 10, 11, 11, 12, 12, 12],
                      "track_idx": [0, 1, 2, 1, 3, 2, 3, 4]})
NUM_ITEMS = 6


@pytest.fixture()
def trainer():
    return LightGCNTrainer(LightGCNConfig(dim=8, layers=3, device="cpu", batch_size=4), TRAIN,
                           NUM_ITEMS)


def test_adjacency_is_symmetric_normalised():
    adjacency = normalized_adjacency(np.array([0, 0, 1]), np.array([0, 1, 1]), 2, 2).to_dense()
    assert torch.allclose(adjacency, adjacency.T)
    # playlist 0 (degree 2) - item 1 (degree 2): 1 / sqrt(2 * 2)
    assert adjacency[0, 3].item() == pytest.approx(0.5)
    assert adjacency[1, 3].item() == pytest.approx(1 / np.sqrt(1 * 2))


@pytest.mark.parametrize("forward", ["symmetric conv", "propagate"])
def test_symmetric_backward_matches_autograd(forward):
    fast, plain = build_model(8, 4, 2, symmetric=True), build_model(8, 4, 2, symmetric=False)
    plain.load_state_dict(fast.state_dict())
    adjacency = normalized_adjacency(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 4]), 3, 5)
    rows = [0, 1, 1, 6]  # a batch's gather, with a repeat
    expected = plain.get_embedding(adjacency)
    (expected[rows] ** 2).sum().backward()
    out = (fast.get_embedding(adjacency) if forward == "symmetric conv"
           else propagate(fast, BipartiteAdjacency.from_adjacency(adjacency, 3)))
    (out[rows] ** 2).sum().backward()
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(fast.embedding.weight.grad, plain.embedding.weight.grad)


def test_bipartite_blocks_multiply_exactly_like_the_whole_adjacency():
    # playlist 3 has no edges and tracks 2 and 5 are cold: empty rows in both blocks
    playlists, tracks = np.array([0, 0, 1, 2, 2, 2]), np.array([0, 1, 1, 4, 3, 0])
    adjacency = normalized_adjacency(playlists, tracks, 4, 6)
    blocks = BipartiteAdjacency.from_adjacency(adjacency, 4)
    assert blocks.playlists_from_tracks.shape == (4, 6)
    assert blocks.tracks_from_playlists.shape == (6, 4)
    assert blocks.playlists_from_tracks.col_indices().dtype == torch.int32
    x = torch.randn(10, 3)
    assert torch.equal(blocks.mm(x), torch.sparse.mm(adjacency, x))
    model = build_model(10, 3, 2)
    expected = model.get_embedding(adjacency)
    torch.testing.assert_close(propagate(model, blocks), expected)
    layers = layer_embeddings(model, blocks)
    summed = sum(a * x for a, x in zip(model.alpha, layers, strict=True))
    torch.testing.assert_close(summed, expected)


def test_fold_in_of_a_training_playlist_reproduces_its_propagated_embedding(trainer):
    """e_u - α_0·x_u^(0) = |S|^-1/2 Σ_i f_i for S = the playlist's training tracks."""
    vectors = trainer.snapshot()
    alpha0 = trainer.model.alpha[0].item()
    layer0 = trainer.order.to_canonical(trainer.model.embedding.weight.detach()).numpy()
    layer0 = layer0[: trainer.num_playlists]
    seeds = seed_matrix(TRAIN.groupby("pid")["track_idx"].apply(np.array), NUM_ITEMS)
    folded = fold_in(seeds, vectors.fold_in_weights, trainer.item_degree)
    np.testing.assert_allclose(folded, vectors.playlists - alpha0 * layer0, atol=1e-6)


def test_fold_in_ignores_cold_seeds_and_scales_by_root_seed_count(trainer):
    weights = trainer.snapshot().fold_in_weights
    degree = trainer.item_degree
    seeds = seed_matrix(pd.Series([[0, 1], [0, 1, 5], [5], []]), NUM_ITEMS)
    folded = fold_in(seeds, weights, degree)
    np.testing.assert_allclose(folded[0], (weights[0] + weights[1]) / np.sqrt(2), atol=1e-6)
    np.testing.assert_allclose(folded[1], folded[0], atol=1e-6)
    assert not folded[2].any() and not folded[3].any()


def test_early_stopping_keeps_the_best_epoch(trainer):
    validation = Validation([np.array([0])], [np.array([1, 2])])
    seen = []
    result = trainer.fit(validation, on_epoch=lambda epoch, recall: seen.append(recall))
    history = result.history
    assert result.best_recall == max(seen) == history["val_recall@100"].max()
    assert len(history) == len(seen) <= trainer.cfg.epochs
    assert result.best_epoch == int(history["epoch"][history["val_recall@100"].idxmax()])


@pytest.mark.parametrize("candidates, expected", [
    ([[[0, 1, 2]]], [[2]]),  # the highest-scored of three
    ([[[3, 1], [1, 3]]], [[3, 3]]),  # per negative slot
    ([[[1]]], [[1]]),  # one candidate: uniform sampling, no scoring
])
def test_hard_negatives_are_the_best_scored_candidates(candidates, expected):
    split = 3  # playlists in rows 0-2, items after them
    final = torch.zeros(split + NUM_ITEMS, 2)
    final[0] = torch.tensor([1.0, 0.0])  # the playlist in row 0
    final[split:split + 4, 0] = torch.tensor([0.1, 0.5, 0.9, 2.0])  # items 0-3 score so
    picked = hardest_negatives(final, torch.tensor([0]), torch.tensor(candidates), split)
    assert picked.tolist() == expected


def test_hard_negatives_train_through_the_stage(synthetic_dataset, synthetic_split, tmp_path):
    cfg = LightGCNConfig(**{**FAST_GRAPH, "negatives": 2, "negative_candidates": 4})
    manifest = run_lightgcn(cfg, synthetic_dataset, synthetic_split, tmp_path / "hard")
    assert manifest["best_val_recall"] > 0.05


def test_init_std_draws_normal_layer0_vectors():
    weight = LightGCNTrainer(LightGCNConfig(dim=64, init_std=0.1, device="cpu"), TRAIN,
                             NUM_ITEMS).model.embedding.weight
    assert weight.std().item() == pytest.approx(0.1, rel=0.2)
    xavier = LightGCNTrainer(LightGCNConfig(dim=64, device="cpu"), TRAIN,
                             NUM_ITEMS).model.embedding.weight
    bound = np.sqrt(6 / (xavier.shape[0] + xavier.shape[1]))  # PyG's Xavier-uniform
    assert xavier.abs().max().item() <= bound


@pytest.mark.parametrize("loss, similarity", [("softmax", "dot"), ("softmax", "cosine"),
                                              ("bpr", "dot")])
def test_stage_learns_and_is_deterministic(synthetic_dataset, synthetic_split, tmp_path, loss,
                                           similarity):
    cfg = LightGCNConfig(**{**FAST_GRAPH, "loss": loss, "similarity": similarity,
                            "negatives": 256 if loss == "softmax" else 1})
    manifest = run_lightgcn(cfg, synthetic_dataset, synthetic_split, tmp_path / "a")
    run_lightgcn(cfg, synthetic_dataset, synthetic_split, tmp_path / "b")
    a, b = (GraphEmbeddings.load(tmp_path / name).vectors for name in ("a", "b"))
    np.testing.assert_array_equal(a.items, b.items)
    history = pd.read_csv(tmp_path / "a" / "history.csv")
    again = pd.read_csv(tmp_path / "b" / "history.csv")
    pd.testing.assert_series_equal(history["val_recall@100"], again["val_recall@100"])
    assert history["loss"].iloc[-1] < history["loss"].iloc[0]
    assert manifest["best_val_recall"] > 0.05
    assert (tmp_path / "a" / "curves.png").is_file()
    assert a.items.shape == (synthetic_dataset.num_tracks, cfg.dim)
    assert a.warm.sum() == manifest["counts"]["warm_items"]
    norms = np.linalg.norm(a.items[a.warm], axis=1)
    assert np.allclose(norms, 1.0, atol=1e-5) == (similarity == "cosine")


@pytest.mark.parametrize("key, value", [("dim", 0), ("lr", 0.0), ("reg", -1.0),
                                        ("device", "tpu"), ("loss", "hinge"),
                                        ("temperature", 0.0), ("max_minutes", -1.0),
                                        ("similarity", "l1"), ("sampling", "user"),
                                        ("lr_schedule", "step"), ("val_every", 0),
                                        ("node_order", "degree"),
                                        ("negative_candidates", 0), ("init_std", -0.1),
                                        ("ema_decay", 1.0), ("ema_decay", -0.5),
                                        ("lr_schedule", "cosine_minutes")])  # no max_minutes
def test_config_rejects_bad_values(key, value):
    from llarapp.errors import ConfigError

    with pytest.raises(ConfigError, match=key):
        LightGCNConfig(**{key: value})


def test_ema_keeps_and_validates_the_weight_average():
    def trainer_with(ema_decay):
        return LightGCNTrainer(LightGCNConfig(dim=4, layers=1, epochs=3, batch_size=2,
                                              ema_decay=ema_decay, device="cpu"),
                               TRAIN, NUM_ITEMS)

    plain_trainer, trainer = trainer_with(0.0), trainer_with(0.9)
    assert plain_trainer.average is None
    # the same steps give the same weights, but the snapshot scores their average
    plain_trainer.train_epoch(), trainer.train_epoch()
    torch.testing.assert_close(trainer.model.embedding.weight,
                               plain_trainer.model.embedding.weight)
    assert not np.allclose(trainer.snapshot().items, plain_trainer.snapshot().items)
    # what fit keeps is the average (every epoch counts as the best: the last is kept)
    plain = trainer_with(0.0).fit(Validation([], []))
    trainer = trainer_with(0.9)
    averaged = trainer.fit(Validation([], []))
    kept = averaged.state["embedding.weight"]
    torch.testing.assert_close(
        kept, trainer.order.to_canonical(trainer.average.module.embedding.weight.detach()))
    assert not torch.allclose(kept, plain.state["embedding.weight"])


def test_hard_negatives_need_bpr():
    from llarapp.errors import ConfigError

    with pytest.raises(ConfigError, match="negative_candidates.*loss=bpr"):
        LightGCNConfig(loss="softmax", negative_candidates=4)


def test_without_validation_playlists_every_epoch_runs():
    trainer = LightGCNTrainer(LightGCNConfig(dim=4, layers=1, epochs=3, patience=1,
                                             device="cpu"), TRAIN, NUM_ITEMS)
    result = trainer.fit(Validation([], []))
    assert len(result.history) == 3 and result.best_epoch == 3


def test_max_minutes_stops_training_after_the_epoch_that_crosses_it():
    trainer = LightGCNTrainer(LightGCNConfig(dim=4, layers=1, epochs=50, patience=50,
                                             max_minutes=1e-9, device="cpu"), TRAIN, NUM_ITEMS)
    result = trainer.fit(Validation([np.array([0])], [np.array([1, 2])]))
    assert len(result.history) == 1 and result.history["elapsed"].iloc[0] > 0


def test_time_spent_in_on_epoch_does_not_count_against_max_minutes():
    import time

    trainer = LightGCNTrainer(LightGCNConfig(dim=4, layers=1, epochs=4, patience=50,
                                             max_minutes=0.005, device="cpu"), TRAIN, NUM_ITEMS)
    result = trainer.fit(Validation([np.array([0])], [np.array([1, 2])]),
                         on_epoch=lambda epoch, recall: time.sleep(0.4))  # 0.4 s > 0.3 s budget
    assert len(result.history) == 4 and result.history["elapsed"].iloc[-1] < 0.3


@pytest.mark.parametrize("schedule, final_lr", [("cosine", 0.0), ("constant", 0.01)])
def test_learning_rate_schedule_runs_over_the_configured_epochs(schedule, final_lr):
    trainer = LightGCNTrainer(LightGCNConfig(dim=4, layers=1, epochs=3, batch_size=4,
                                             lr=0.01, lr_schedule=schedule, device="cpu"),
                              TRAIN, NUM_ITEMS)
    rates = []
    for _ in range(3):
        rates.append(trainer.optimizer.param_groups[0]["lr"])
        trainer.train_epoch()
    assert rates[0] == pytest.approx(0.01)
    assert rates == sorted(rates, reverse=True)
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(final_lr, abs=1e-12)


class StoppedClock:
    seconds = 0.0


@pytest.mark.parametrize("seconds, share_of_lr", [(0.0, 1.0), (15.0, 0.5), (30.0, 0.0),
                                                  (45.0, 0.0)])
def test_cosine_minutes_anneals_over_the_time_budget(seconds, share_of_lr):
    trainer = LightGCNTrainer(LightGCNConfig(dim=4, layers=1, epochs=1000, lr=0.01,
                                             lr_schedule="cosine_minutes", max_minutes=0.5,
                                             device="cpu"), TRAIN, NUM_ITEMS)
    trainer.clock = StoppedClock()
    trainer.train_epoch()  # thousands of epochs left: the step count does not move it
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.01)
    trainer.clock.seconds = seconds
    trainer.scheduler.step()
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.01 * share_of_lr, abs=1e-12)


def test_validation_runs_every_val_every_epochs_and_after_the_last():
    trainer = LightGCNTrainer(LightGCNConfig(dim=4, layers=1, epochs=5, val_every=2,
                                             patience=10, device="cpu"), TRAIN, NUM_ITEMS)
    validated = []
    result = trainer.fit(Validation([np.array([0])], [np.array([1, 2])]),
                         on_epoch=lambda epoch, recall: validated.append(epoch))
    assert validated == [2, 4, 5]
    scored = result.history.dropna(subset=["val_recall@100"])["epoch"].tolist()
    assert scored == validated and len(result.history) == 5
    assert result.best_epoch in validated


def test_train_epoch_can_stop_after_a_few_steps():
    trainer = LightGCNTrainer(LightGCNConfig(dim=4, layers=1, batch_size=2, device="cpu"),
                              TRAIN, NUM_ITEMS)
    trainer.train_epoch(max_steps=1)
    assert trainer.optimizer.state[trainer.model.embedding.weight]["step"] == 1
    trainer.train_epoch()  # 8 edges in batches of 2
    assert trainer.optimizer.state[trainer.model.embedding.weight]["step"] == 1 + 4
