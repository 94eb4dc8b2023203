"""Text encoder: MiniLM by default, any BERT/DistilBERT folder or s3:// prefix."""

import numpy as np
import pandas as pd
import pytest

from llarapp.data.texts import item_texts
from llarapp.errors import ConfigError
from llarapp.models.text_embed import TextEmbedConfig, TextEmbeddings, run_text_embed
from llarapp.models.text_encoder import TextEncoder, resolve_encoder

TEXTS = ["Whiskey Road — Jake Stone — Dirt", "Techno Rave — DJ Neon",
         "Whiskey Road — Jake Stone — Dirt"]


def _tiny_checkpoint(folder, architecture: str):
    from transformers import AutoTokenizer, BertConfig, BertModel, DistilBertConfig, DistilBertModel

    tokenizer = AutoTokenizer.from_pretrained(resolve_encoder("minilm"))
    if architecture == "bert":
        model = BertModel(BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32,
                                     num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=64))
    else:
        model = DistilBertModel(DistilBertConfig(vocab_size=tokenizer.vocab_size, dim=32,
                                                 n_layers=1, n_heads=2, hidden_dim=64))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module", params=["bert", "distilbert"])
def tiny_encoder(request, tmp_path_factory):
    return _tiny_checkpoint(tmp_path_factory.mktemp(request.param), request.param)


def test_default_minilm_gives_unit_vectors_and_sensible_neighbours():
    encoder = TextEncoder(device="cpu")
    vectors = encoder.encode(["country whiskey road trip", "honky tonk nashville boots",
                              "techno rave bass drop"])
    assert vectors.shape == (3, 384) and encoder.model.config.model_type == "bert"
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]


def test_local_checkpoint_works_and_duplicates_share_a_vector(tiny_encoder):
    encoder = TextEncoder(str(tiny_encoder), device="cpu", batch_size=2)
    vectors = encoder.encode(TEXTS)
    assert vectors.shape == (3, 32)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(vectors[0], vectors[2])
    np.testing.assert_allclose(encoder.encode(TEXTS[:1])[0], vectors[0], atol=1e-6)


def test_checkpoint_from_s3(tiny_encoder, s3_env, monkeypatch, tmp_path):
    from llarapp.storage import upload_dir

    monkeypatch.setenv("LLARAPP_CACHE", str(tmp_path))
    upload_dir(tiny_encoder, f"s3://{s3_env}/encoders/tiny", last="config.json")
    local = TextEncoder(str(tiny_encoder), device="cpu").encode(TEXTS)
    remote = TextEncoder(f"s3://{s3_env}/encoders/tiny", device="cpu").encode(TEXTS)
    np.testing.assert_allclose(remote, local, atol=1e-6)


def test_a_folder_without_a_model_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="no config.json"):
        TextEncoder(str(tmp_path))


def test_item_text_joins_track_artist_album_and_lyrics():
    tracks = pd.DataFrame({"track_name": ["Song", "Tune"], "artist_name": ["Band", "Solo"],
                           "album_name": ["LP", None], "lyrics": ["la  la\nla", None]})
    assert item_texts(tracks) == ["Song — Band — LP — la la la", "Tune — Solo"]
    assert item_texts(tracks, lyrics=False)[0] == "Song — Band — LP"


def test_stage_writes_item_and_title_vectors(synthetic_dataset, tiny_encoder, tmp_path):
    cfg = TextEmbedConfig(encoder=str(tiny_encoder), device="cpu")
    manifest = run_text_embed(cfg, synthetic_dataset, tmp_path / "text")
    text = TextEmbeddings.load(tmp_path / "text")
    assert text.items.shape == (synthetic_dataset.num_tracks, 32) and text.dim == 32
    assert manifest["pooling"] == "mean" and manifest["normalised"]
    pids = synthetic_dataset.playlists["pid"].to_numpy()[:3]
    titles = text.titles(np.r_[pids, -1])
    np.testing.assert_allclose(np.linalg.norm(titles[:3], axis=1), 1.0, atol=1e-5)
    assert not titles[3].any()  # unknown pid
