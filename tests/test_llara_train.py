"""LLaRA training: curriculum schedule, frozen projector, LoRA save/load/merge, evaluation."""

import json

import numpy as np
import pytest
import torch
from conftest import TINY_LLARA

from llarapp.llara.checkpoint import LlaraArtifact
from llarapp.llara.config import LlaraConfig
from llarapp.llara.curriculum import Curriculum, hybrid_probability
from llarapp.llara.eval_llara import LlaraEvalConfig, move_target, run_eval_llara, score_examples
from llarapp.llara.examples import ExampleFactory
from llarapp.llara.model import FeatureHead
from llarapp.llara.prompts import Example
from llarapp.llara.stage import build_ranker, train_ranker


@pytest.mark.parametrize("schedule, step, total, expected", [
    ("curriculum", 0, 10, 0.0), ("curriculum", 5, 10, 0.5), ("curriculum", 9, 10, 0.9),
    ("text", 7, 10, 0.0), ("hybrid", 0, 10, 1.0),
    ("two_stage", 4, 10, 0.0), ("two_stage", 5, 10, 1.0),
])
def test_hybrid_probability(schedule, step, total, expected):
    assert hybrid_probability(schedule, step, total) == pytest.approx(expected)


def test_curriculum_draws_become_hybrid():
    curriculum = Curriculum("curriculum", 2000, seed=0)
    draws = np.array([curriculum.draw(step)[1] for step in range(2000)])
    assert draws[:200].mean() < 0.2 and draws[-200:].mean() > 0.8


def tiny(**changes):
    return LlaraConfig(**{**TINY_LLARA, **changes})


@pytest.fixture(scope="module")
def examples(llara_sources):
    factory = ExampleFactory(llara_sources, TINY_LLARA["num_candidates"],
                             TINY_LLARA["history_len"], seed=0)
    return factory.training(10, TINY_LLARA["hard_negatives"], TINY_LLARA["hard_pool"])


def test_training_examples_hold_the_target_once(examples, llara_sources):
    next_track = llara_sources.split.next_track
    targets = set(next_track["target"])
    for e in examples:
        assert len(set(e.candidates.tolist())) == len(e.candidates) == 6
        assert e.candidates[e.label] in targets
        assert not set(e.history.tolist()) & set(np.delete(e.candidates, e.label).tolist())
    assert len({e.label for e in examples}) > 1  # shuffled, not always first


def test_validation_questions_are_unseen_fit_playlists_as_served(llara_sources):
    from llarapp.rerank.features import CatalogueFeatures
    from llarapp.rerank.lists import fit_questions, retrieved_lists, select_mask

    factory = ExampleFactory(llara_sources, TINY_LLARA["num_candidates"],
                             TINY_LLARA["history_len"], seed=0)
    examples, stats = factory.validation_training(200, 2, list_share=0.5)
    val = llara_sources.split.heldout_for("val")
    fit_pids = set(val.loc[~select_mask(val), "pid"])
    titles = {str(llara_sources.titles.get(p, "")) for p in fit_pids}
    assert examples and all(e.title in titles for e in examples)
    assert 0 <= stats["graph_first_share"] <= 1 and stats["listed"] <= stats["questions"]
    questions = fit_questions(llara_sources.split)
    tables = CatalogueFeatures.from_split(llara_sources.dataset.tracks,
                                          llara_sources.split.train)
    served = {tuple(c) for c in retrieved_lists(llara_sources, tables, questions,
                                                TINY_LLARA["num_candidates"]).candidates}
    listed = [e for e in examples if e.positives is not None]
    assert listed and len(listed) < len(examples)
    for e in listed:  # the retrieved top K in retrieval order, held-out tracks positive
        assert tuple(e.candidates) in served
        assert e.positives[e.label] and e.positives.sum() >= 1
    train_pairs = set(zip(llara_sources.split.train["pid"], llara_sources.split.train[
        "track_idx"], strict=True))
    held = {(p, t) for p, ts in zip(questions["pid"], questions["targets"], strict=True)
            for t in ts}
    assert not held & train_pairs  # the positives are edges the graph model never saw
    paired = [e for e in examples if e.positives is None]
    assert paired and all(e.features is not None for e in paired)


@pytest.mark.parametrize("positives", [[[0, 1, 0, 0]], [[1, 0, 1, 0]], [[0, 0, 0, 1]]])
def test_listwise_loss(positives):
    from llarapp.llara.stage import listwise_loss

    logits = torch.tensor([[0.5, 2.0, -1.0, 0.3]])
    mask = torch.tensor(positives, dtype=torch.bool)
    probs = torch.softmax(logits, dim=1)
    expected = -torch.log(probs[mask].sum())
    torch.testing.assert_close(listwise_loss(logits, mask), expected)


def test_curriculum_is_global_across_epochs_and_workers(llara_sources, examples):
    cfg = tiny(steps=9, batch_size=4, num_workers=2, pretrain=False)  # 3 steps per epoch
    ranker, collator, _ = build_ranker(cfg, llara_sources, None, torch.device("cpu"))
    history = train_ranker(ranker, examples, collator, cfg, torch.device("cpu"))
    assert history["epoch"].max() == 2
    assert history["step"].tolist() == list(range(9))
    np.testing.assert_allclose(history["p_hybrid"], np.arange(9) / 9)
    assert history["p_hybrid"].is_monotonic_increasing
    assert np.isfinite(history["loss"]).all()


def trainable_state(module):
    return {n: p.detach().clone() for n, p in module.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("schedule, projector_moves", [("text", False), ("hybrid", True)])
def test_projector_is_frozen_on_text_only_steps(llara_sources, examples, schedule,
                                                projector_moves):
    cfg = tiny(steps=3, schedule=schedule, pretrain=False, lora_dropout=0.0)
    ranker, collator, _ = build_ranker(cfg, llara_sources, None, torch.device("cpu"))
    before_projector = trainable_state(ranker.projector)
    before_lora = {n: p for n, p in trainable_state(ranker.model).items() if "lora_B" in n}
    train_ranker(ranker, examples, collator, cfg, torch.device("cpu"))
    after_projector = trainable_state(ranker.projector)
    moved = any(not torch.equal(before_projector[n], after_projector[n])
                for n in before_projector)
    assert moved == projector_moves
    after_lora = trainable_state(ranker.model)
    assert any(not torch.equal(p, after_lora[n]) for n, p in before_lora.items())


def test_lora_trains_only_adapters_tokens_and_heads(llara_sources):
    cfg = tiny(pretrain=False, lora_targets=["q_proj", "v_proj"])
    ranker, _, _ = build_ranker(cfg, llara_sources, None, torch.device("cpu"))
    names = [n for n, p in ranker.named_parameters() if p.requires_grad]
    assert any("q_proj.lora_A" in n for n in names) and any("v_proj.lora_B" in n for n in names)
    assert not any("k_proj.lora" in n or "mlp" in n for n in names)
    heads = ("projector.", "aux_head.", "pointer.", "feature_head.")
    other = [n for n in names if "lora_" not in n and not n.startswith(heads)]
    assert other and all("trainable_tokens" in n for n in other), other
    frozen = sum(p.numel() for p in ranker.parameters() if not p.requires_grad)
    assert frozen > 10 * sum(p.numel() for p in ranker.parameters() if p.requires_grad)


@pytest.fixture(scope="module")
def eval_examples(llara_sources):
    factory = ExampleFactory(llara_sources, TINY_LLARA["num_candidates"],
                             TINY_LLARA["history_len"], seed=3)
    heldout = llara_sources.split.heldout_for("test").head(12)
    return factory.random_candidates(heldout)


def test_saved_adapter_gives_the_same_scores(trained_llara, llara_sources, eval_examples):
    from llarapp.llara.stage import make_collator

    artifact = LlaraArtifact.load(trained_llara)
    manifest = artifact.manifest
    assert manifest["config"]["finetune"] == "lora"
    assert (trained_llara / "adapter" / "adapter_config.json").is_file()
    first, second = artifact.ranker(), artifact.ranker()
    collator = make_collator(first.backbone, llara_sources, artifact.config)
    cpu = torch.device("cpu")
    scores = score_examples(first, collator, eval_examples, True, 8, cpu)
    np.testing.assert_allclose(score_examples(second, collator, eval_examples, True, 8, cpu),
                               scores, rtol=0, atol=0)
    merged = score_examples(second.merge_adapter(), collator, eval_examples, True, 8, cpu)
    assert second.backbone.peft is None
    np.testing.assert_allclose(merged, scores, atol=1e-4)
    # the adapter matters: the same backbone without it scores differently
    bare = artifact.ranker()
    bare.backbone.peft.disable_adapter_layers()
    assert not np.allclose(score_examples(bare, collator, eval_examples, True, 8, cpu), scores)


def test_training_artifact_records_the_curriculum(trained_llara):
    import pandas as pd

    log = pd.read_csv(trained_llara / "curriculum.csv")
    assert list(log["p_hybrid"]) == pytest.approx([s / 6 for s in range(6)])
    assert set(log["hybrid"]) <= {0, 1}
    assert (trained_llara / "curves.png").stat().st_size > 0
    pretrain = pd.read_csv(trained_llara / "pretrain.csv")
    assert len(pretrain) == TINY_LLARA["pretrain_steps"]


def test_training_run_is_tracked_in_mlflow(trained_llara):
    import mlflow

    run = LlaraArtifact.load(trained_llara).manifest["mlflow"]
    mlflow.set_tracking_uri(run["tracking_uri"])
    client = mlflow.MlflowClient()
    curve = client.get_metric_history(run["run_id"], "p_hybrid")
    assert [m.value for m in sorted(curve, key=lambda m: m.step)] == pytest.approx(
        [s / 6 for s in range(6)])
    assert len(client.get_metric_history(run["run_id"], "pretrain_loss")) == 2
    assert client.get_run(run["run_id"]).data.params["device"] == "cpu"


def test_move_target(eval_examples):
    for position in (0, -1):
        for before, after in zip(eval_examples, move_target(eval_examples, position),
                                 strict=True):
            k = len(before.candidates)
            assert after.label == position % k
            assert after.candidates[after.label] == before.candidates[before.label]
            rest = np.delete(after.candidates, after.label)
            assert rest.tolist() == np.delete(before.candidates, before.label).tolist()
            by_item = dict(zip(before.candidates.tolist(), before.features.tolist(),
                               strict=True))
            assert after.features.tolist() == [by_item[c] for c in after.candidates.tolist()]


def test_protocol_a_candidates_get_the_features_the_retriever_gives_them(eval_examples,
                                                                        llara_sources):
    """Shuffled target-plus-random sets carry the served features: the hybrid's scores and
    its rank of those candidates."""
    from llarapp.rerank.features import FEATURES

    rank, hybrid = FEATURES.index("retrieval_rank"), FEATURES.index("hybrid")
    for e in eval_examples:
        order = np.argsort(-e.features[:, hybrid], kind="stable")
        assert e.features[order, rank].tolist() == list(range(len(e.candidates)))
    heldout = llara_sources.split.heldout_for("test").head(len(eval_examples))
    examples = ExampleFactory(llara_sources, TINY_LLARA["num_candidates"],
                              TINY_LLARA["history_len"], seed=3).random_candidates(heldout)
    from llarapp.rerank.lists import retrieved_lists

    top = retrieved_lists(llara_sources, llara_sources.catalogue_features, heldout, 1)
    for e, best, features in zip(examples, top.candidates[:, 0], top.features[:, 0],
                                 strict=True):
        if best in e.candidates:  # the retriever's first pick scores the same here
            own = e.features[list(e.candidates).index(best)]
            assert own[hybrid] == pytest.approx(features[hybrid], rel=1e-5)


def test_eval_llara_reports_both_protocols(trained_llara, llara_sources, tmp_path):
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = run_eval_llara(LlaraEvalConfig(device="cpu", tracking_uri=tracking),
                            LlaraArtifact.load(trained_llara), llara_sources, tmp_path / "eval")
    rows = {(r["model"], r["segment"]): r for r in result["candidates"]}
    for model in ("llara", "feature_head", "lightgcn", "hybrid"):
        row = rows[(model, "all")]
        assert row["playlists"] == len(llara_sources.split.heldout_for("test"))
        assert 0 <= row["hr@1"] <= row["hr@5"] <= 1
    assert set(result["position_bias"]) == {"hr@1_target_first", "hr@1_target_last"}
    assert set(result["rerank"]) == {"recall@10_before", "ndcg@10_before", "recall@10_after",
                                     "ndcg@10_after"}
    rankers = result["rankers"]
    table = {(r["split"], r["ranker"]): r for r in rankers["table"]}
    assert set(table) == {(split, ranker) for split in ("select", "test") for ranker in
                          ("retrieval", "lambdamart", "llara", "feature_head")}
    assert table[("test", "retrieval")]["ndcg@10"] == result["rerank"]["ndcg@10_before"]
    assert table[("test", "llara")]["ndcg@10"] == result["rerank"]["ndcg@10_after"]
    assert rankers["ranker"] in ("retrieval", "lambdamart", "llara") and rankers["why"]
    assert 0 <= rankers["graph_first_share"]["fit"] <= 1
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert saved["candidates"] == json.loads(json.dumps(result["candidates"]))
    assert saved["rankers"]["ranker"] == rankers["ranker"]
    for name in ("hr_by_segment.png", "rankers.png", "lambdamart.txt"):
        assert (tmp_path / "eval" / name).is_file()
    assert f"Shipped: **{rankers['ranker']}**" in (tmp_path / "eval" / "metrics.md").read_text()
    assert result["mlflow"]["tracking_uri"] == tracking


def test_feature_head_starts_as_the_retrieval_order():
    from llarapp.rerank.features import FEATURES

    head = FeatureHead(len(FEATURES), FEATURES.index("retrieval_rank"))
    features = torch.rand(3, 6, len(FEATURES))
    features[..., FEATURES.index("retrieval_rank")] = torch.arange(6.0)
    head.fit_scale(features.reshape(-1, len(FEATURES)))
    scores = head(features)
    assert torch.equal(scores.argsort(dim=1, descending=True), torch.arange(6).expand(3, 6))
    features[..., FEATURES.index("hybrid")] += 5.0  # other columns start with no weight
    torch.testing.assert_close(head(features), scores)


@pytest.mark.parametrize("steps, trainable", [(0, True), (40, False)])
def test_feature_head_prefit_learns_then_freezes(steps, trainable):
    """The head alone learns a feature signal before the LM, and is frozen after."""
    from llarapp.llara.stage import prefit_feature_head
    from llarapp.rerank.features import FEATURES

    head = FeatureHead(len(FEATURES), FEATURES.index("retrieval_rank"))
    rng = np.random.default_rng(0)
    examples = []
    for _ in range(40):
        features = rng.normal(size=(6, len(FEATURES))).astype(np.float32)
        label = int(np.argmax(features[:, FEATURES.index("cooccurrence")]))
        examples.append(Example("t", np.array([1]), np.arange(6), label,
                                np.zeros(4, np.float32), features=features))
    losses = prefit_feature_head(head, examples, steps, lr=0.05)
    assert len(losses) == steps and (not steps or losses[-1] < 0.5 * losses[0])
    assert all(p.requires_grad == trainable for p in head.parameters())
