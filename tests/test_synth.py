import json

import numpy as np
import pandas as pd

from llarapp.data import vocab
from llarapp.data.synth import SynthConfig, run_synth
from llarapp.models.recommendations import title_tokens


def test_same_seed_same_bytes_other_seed_other_data(tmp_path):
    cfg = SynthConfig(num_playlists=50, slice_size=25, seed=11)
    run_synth(cfg, tmp_path / "a")
    run_synth(cfg, tmp_path / "b")
    run_synth(cfg.replace(seed=12), tmp_path / "c")
    for name in ("mpd.slice.0-24.json", "mpd.slice.25-49.json", "lyrics.csv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert (tmp_path / "a" / "mpd.slice.0-24.json").read_bytes() != \
        (tmp_path / "c" / "mpd.slice.0-24.json").read_bytes()


def test_slices_follow_the_mpd_format(synthetic_slices):
    document = json.loads((synthetic_slices / "mpd.slice.0-199.json").read_text())
    assert document["info"]["slice"] == "0-199"
    playlist = document["playlists"][0]
    for key in ("name", "collaborative", "pid", "modified_at", "num_tracks", "num_albums",
                "num_followers", "tracks", "num_edits", "duration_ms", "num_artists"):
        assert key in playlist
    track = playlist["tracks"][0]
    assert list(track) == ["pos", "artist_name", "track_uri", "artist_uri", "track_name",
                           "album_uri", "duration_ms", "album_name"]
    assert track["track_uri"].startswith("spotify:track:") and len(track["track_uri"]) == 36
    assert playlist["num_tracks"] == len(playlist["tracks"])


def test_popularity_is_heavy_tailed(synthetic_dataset):
    counts = np.sort(synthetic_dataset.tracks["num_playlists"].to_numpy())[::-1]
    top_share = counts[: len(counts) // 100].sum() / counts.sum()
    assert top_share > 0.05  # the top 1% of tracks hold well over 1% of plays


def test_titles_carry_genre_and_mood_words(synthetic_dataset):
    words = {w for words in (*vocab.GENRES.values(), *vocab.MOODS.values())
             for phrase in words for w in title_tokens(phrase)}
    names = synthetic_dataset.playlists["name"]
    informative = names.map(lambda n: bool(set(title_tokens(n)) & words)).mean()
    assert informative > 0.85


def test_playlists_have_coherent_order(synthetic_dataset):
    """Adjacent tracks share an artist far more often than random pairs do."""
    frame = synthetic_dataset.interactions.merge(
        synthetic_dataset.tracks[["track_idx", "artist_name"]], on="track_idx")
    frame = frame.sort_values(["pid", "pos"])
    same_pid = frame["pid"].to_numpy()[1:] == frame["pid"].to_numpy()[:-1]
    artists = frame["artist_name"].to_numpy()
    adjacent = (artists[1:] == artists[:-1])[same_pid].mean()
    shuffled = pd.Series(artists).sample(frac=1, random_state=0).to_numpy()
    assert adjacent > 5 * (shuffled[1:] == shuffled[:-1]).mean()
