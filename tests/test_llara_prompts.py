"""LLaRA prompts, the slot overwrite and the backbones (scratch and saved folders)."""

import numpy as np
import pytest
import torch

from llarapp.errors import ConfigError
from llarapp.llara.backbone import Backbone
from llarapp.llara.config import LlaraConfig
from llarapp.llara.model import LlaraRanker
from llarapp.llara.prompts import PLAYLIST_SLOT, Collator, Example, PromptBuilder
from llarapp.llara.tokens import LABELS

ITEM_TEXTS = ["mr brightside by the killers", "yellow by coldplay", "hey ya by outkast",
              "toxic by britney spears", "one by u2", "creep by radiohead"]
GRAPH = np.random.default_rng(0).normal(size=(len(ITEM_TEXTS), 8)).astype(np.float32)


@pytest.fixture(scope="module")
def scratch():
    return Backbone.load()


def example(history=(0, 1), candidates=(2, 3, 4, 5), label=1, title="summer road trip"):
    return Example(title, np.array(history), np.array(candidates), label, np.ones(8, np.float32))


def collate(backbone, examples, playlist_slot=True):
    builder = PromptBuilder(backbone.tokenizer, backbone.ids, ITEM_TEXTS, 6, playlist_slot)
    return builder, Collator(builder, GRAPH, backbone.tokenizer.pad_token_id)(examples)


@pytest.mark.parametrize("history, candidates, playlist_slot", [
    ((0, 1), (2, 3, 4, 5), True),
    ((0, 1), (2, 3, 4, 5), False),
    ((), (2, 3), False),  # title-only playlist
    ((5, 4, 3, 2, 1), (0, 1, 2, 3, 4, 5), True),
])
def test_one_slot_per_item(scratch, history, candidates, playlist_slot):
    builder, batch = collate(scratch, [example(history, candidates)], playlist_slot)
    prompt = builder.build(example(history, candidates))
    items = [i for i in prompt.slot_items if i != PLAYLIST_SLOT]
    assert items == [*history, *candidates]
    assert prompt.slot_items.count(PLAYLIST_SLOT) == int(playlist_slot)
    assert int(batch.slot_mask.sum()) == len(history) + len(candidates) + int(playlist_slot)
    ids = torch.tensor(prompt.input_ids)
    assert int((ids == scratch.ids.history_slot).sum()) == len(history)
    assert int((ids == scratch.ids.candidate_slot).sum()) == len(candidates)
    labels = [scratch.tokenizer.convert_ids_to_tokens(i) for i in prompt.input_ids
              if i in scratch.ids.labels]
    assert labels == list(LABELS[:len(candidates)])
    # the slot vectors are the items' graph vectors, in prompt order
    expected = [np.ones(8) if i == PLAYLIST_SLOT else GRAPH[i] for i in prompt.slot_items]
    np.testing.assert_allclose(batch.slot_vectors.numpy(), np.stack(expected), rtol=1e-6)


def test_answer_position_is_last_real_token(scratch):
    short, long = example(history=()), example(history=(0, 1, 2))
    _, batch = collate(scratch, [short, long])
    lengths = batch.attention_mask.sum(dim=1)
    assert batch.answer_index.tolist() == (lengths - 1).tolist()
    assert lengths[0] < lengths[1]
    assert (batch.input_ids[0, lengths[0]:] == scratch.tokenizer.pad_token_id).all()


@pytest.mark.parametrize("hybrid", [True, False])
def test_projector_overwrites_exactly_the_slots(scratch, hybrid):
    ranker = LlaraRanker(scratch, GRAPH.shape[1], 16, graph_scale=2.0).eval()
    _, batch = collate(scratch, [example(), example(history=(3,), candidates=(0, 5, 1, 4))])
    with torch.no_grad():
        embeds = ranker.prompt_embeddings(batch, torch.tensor([hybrid, hybrid]))
        plain = scratch.embed(batch.input_ids)
        placeholder = scratch.embed(torch.tensor([scratch.ids.placeholder]))[0]
        projected = ranker.projector(batch.slot_vectors / 2.0)
    slots = batch.slot_mask
    torch.testing.assert_close(embeds[~slots], plain[~slots], rtol=0, atol=0)
    expected = projected if hybrid else placeholder.expand_as(projected)
    torch.testing.assert_close(embeds[slots], expected)
    assert not torch.allclose(embeds[slots], plain[slots])


def test_mixed_batch_overwrites_per_row(scratch):
    ranker = LlaraRanker(scratch, GRAPH.shape[1], 16).eval()
    _, batch = collate(scratch, [example(), example()])
    with torch.no_grad():
        embeds = ranker.prompt_embeddings(batch, torch.tensor([True, False]))
    first, second = embeds[0][batch.slot_mask[0]], embeds[1][batch.slot_mask[1]]
    assert not torch.allclose(first, second)
    assert torch.allclose(second, second[:1].expand_as(second))  # all placeholders


def test_scores_rank_all_candidates_in_one_pass(scratch):
    ranker = LlaraRanker(scratch, GRAPH.shape[1], 16).eval()
    _, batch = collate(scratch, [example(candidates=(0, 1, 2)), example(candidates=(3, 4, 5))])
    labels = list(scratch.ids.labels[:3])
    with torch.no_grad():
        logits = ranker(batch, hybrid=True)
        # the scores are the LM head's logits of (A), (B), (C) at the answer position
        hidden = scratch.body(inputs_embeds=ranker.prompt_embeddings(
            batch, torch.tensor([True, True])), attention_mask=batch.attention_mask)
        hidden = hidden.last_hidden_state
        head = scratch.model.get_output_embeddings()
        answer = ranker.pointer(hidden[torch.arange(2), batch.answer_index],
                                hidden[torch.arange(2)[:, None], batch.label_positions],
                                head.weight[labels])
        full = head(answer)
    assert logits.shape == (2, 3)
    torch.testing.assert_close(logits, full[:, labels])


def test_label_pointer_adds_attention_weights_to_label_logits():
    from llarapp.llara.model import LabelPointer

    torch.manual_seed(0)
    pointer = LabelPointer(hidden=8, head_dim=4)
    rows = 2 * torch.eye(8)[:3]  # orthogonal label rows, norm 2
    answer, labels = torch.randn(5, 8), torch.randn(5, 3, 8)
    with torch.no_grad():
        pointer.gain.fill_(6.0)
        out = pointer(answer, labels, rows)
        weights = torch.softmax(torch.einsum("bkh,bh->bk", pointer.key(labels),
                                             pointer.query(answer)) / 2, dim=1)
    torch.testing.assert_close(out @ rows.T, answer @ rows.T + 6.0 * weights)
    assert torch.equal(out[:, 3:], answer[:, 3:])  # nothing outside the label directions


def tiny_causal_lm(kind, tokenizer, folder):
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    if kind == "llama":
        model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=32,
                                             intermediate_size=64, num_hidden_layers=2,
                                             num_attention_heads=2, num_key_value_heads=2,
                                             max_position_embeddings=512))
    else:
        model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2,
                                           n_head=2, n_positions=512))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_pretrained_backbone_from_a_folder(kind, tmp_path):
    from transformers import AutoTokenizer

    from llarapp.models.text_encoder import resolve_encoder

    base_tokenizer = AutoTokenizer.from_pretrained(resolve_encoder("minilm"))
    folder = tiny_causal_lm(kind, base_tokenizer, tmp_path / kind)
    backbone = Backbone.load(str(folder))
    assert backbone.hidden_size == 32 and backbone.source == str(folder)
    assert backbone.model.get_input_embeddings().num_embeddings >= len(backbone.tokenizer)
    assert backbone.tokenizer.convert_tokens_to_ids("(A)") == backbone.ids.labels[0]
    ranker = LlaraRanker(backbone, GRAPH.shape[1], 16).eval()
    _, batch = collate(backbone, [example(), example(history=())])
    with torch.no_grad():
        logits = ranker(batch, hybrid=True)
    assert logits.shape == (2, 4) and torch.isfinite(logits).all()
    assert LlaraConfig(backbone=str(folder)).domain_pretraining is False


def test_pretrained_backbone_from_s3(s3_env, tmp_path):
    from transformers import AutoTokenizer

    from llarapp.models.text_encoder import resolve_encoder
    from llarapp.storage import upload_dir

    tokenizer = AutoTokenizer.from_pretrained(resolve_encoder("minilm"))
    folder = tiny_causal_lm("llama", tokenizer, tmp_path / "llama")
    upload_dir(folder, f"s3://{s3_env}/llms/tiny", last="config.json")
    backbone = Backbone.load(f"s3://{s3_env}/llms/tiny")
    assert backbone.hidden_size == 32


def test_backbone_folder_without_a_model_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="no config.json"):
        Backbone.load(str(tmp_path))


@pytest.mark.parametrize("overrides, message", [
    ({"schedule": "random"}, "schedule must be one of"),
    ({"num_candidates": 27}, "num_candidates must be in 2..26"),
    ({"hard_negatives": 20}, "hard_negatives must be in 0..num_candidates-1"),
    ({"finetune": "qlora"}, "finetune must be one of"),
    ({"lora_dropout": 1.0}, "lora_dropout"),
    ({"steps": 0}, "steps must be > 0"),
    ({"lora_targets": []}, "lora_targets"),
])
def test_config_rejects_bad_values(overrides, message):
    with pytest.raises(ConfigError, match=message):
        LlaraConfig(**overrides)


def test_scratch_backbone_pretrains_by_default():
    assert LlaraConfig().domain_pretraining
    assert not LlaraConfig(pretrain=False).domain_pretraining


def test_text_that_looks_like_a_label_stays_text(scratch):
    texts = [*ITEM_TEXTS[:-1], "intro (a) by [CAN] band"]
    builder = PromptBuilder(scratch.tokenizer, scratch.ids, texts, 8)
    ex = example(title="mix (A) [HIS]", candidates=(5, 1, 2, 3))
    prompt = builder.build(ex)
    ids = torch.tensor(prompt.input_ids)
    assert int(torch.isin(ids, torch.tensor(scratch.ids.labels)).sum()) == 4
    assert int((ids == scratch.ids.candidate_slot).sum()) == 4
    assert int((ids == scratch.ids.history_slot).sum()) == 2
    assert [prompt.input_ids[p] for p in prompt.label_positions] == list(scratch.ids.labels[:4])
    # each label follows its candidate's slot
    assert [p - 1 for p in prompt.label_positions] == prompt.slot_positions[-4:]


def test_slot_context_feeds_the_playlist_product(scratch):
    ranker = LlaraRanker(scratch, GRAPH.shape[1], 16, graph_scale=2.0, slot_context=True)
    _, batch = collate(scratch, [example()])
    v = batch.slot_vectors / 2.0
    with torch.no_grad():
        torch.testing.assert_close(
            ranker.project(batch.slot_vectors, batch.slot_context),
            ranker.projector(torch.cat([v, v * batch.slot_context / 2.0], dim=1)))
    assert ranker.projector.net[0].in_features == 2 * GRAPH.shape[1]
    with torch.no_grad():
        scores, aux = ranker(batch, hybrid=True, aux=True)
    assert scores.shape == aux.shape == (1, 4)


class CountingEncoder:
    """Wordpieces are the characters' code points; records every batch it is asked for."""

    def __init__(self):
        self.batches = []

    def __call__(self, texts, limit=None):
        self.batches.append(list(texts))
        return [[ord(c) for c in text][:limit] for text in texts]


@pytest.mark.parametrize("calls, encoded", [
    ([[3, 1, 3]], [["yellow by coldplay", "toxic by britney spears"]]),
    ([[0, 1], [1, 0]], [["mr brightside by the killers", "yellow by coldplay"]]),
    ([[5], [5, 4], [4, 5, 5]], [["creep by radiohead"], ["one by u2"]]),
])
def test_item_tokens_encode_each_item_once_and_answer_in_order(calls, encoded):
    from llarapp.llara.layout import ItemTokens

    encoder = CountingEncoder()
    tokens = ItemTokens(encoder, ITEM_TEXTS, max_tokens=4)
    for items in calls:
        assert tokens(np.array(items)) == [[ord(c) for c in ITEM_TEXTS[i][:4]] for i in items]
    assert encoder.batches == encoded
