import gzip
import json

import pandas as pd
import pytest

from llarapp.data.ingest import IngestConfig, run_ingest
from llarapp.errors import DataValidationError, StorageNotFoundError
from llarapp.manifest import read_manifest
from llarapp.storage import write_bytes
from tests.conftest import make_playlist, shared_data, write_slice


def run(input_dir, out, **cfg):
    return run_ingest(IngestConfig(input=str(input_dir), workers=cfg.pop("workers", 1), **cfg), out)


def test_synthetic_slices_ingest_cleanly(synthetic_dataset):
    counts = synthetic_dataset.manifest["counts"]
    assert counts["playlists"] == 600 and counts["rejected"] == 0
    tracks, interactions = synthetic_dataset.tracks, synthetic_dataset.interactions
    assert tracks["track_idx"].tolist() == list(range(len(tracks)))
    assert tracks["track_uri"].is_unique
    assert len(interactions) == counts["interactions"]
    # num_playlists is the number of playlists each track is in
    assert (interactions.groupby("track_idx").size().reindex(tracks["track_idx"]).to_numpy()
            == tracks["num_playlists"].to_numpy()).all()
    assert counts["tracks_with_lyrics"] > 0  # lyrics.csv beside the slices was joined


def test_parallel_and_serial_ingest_are_identical(synthetic_slices, tmp_path):
    one = run(synthetic_slices, tmp_path / "one", workers=1)
    two = run(synthetic_slices, tmp_path / "two", workers=2)
    assert one["content_hash"] == two["content_hash"] and one["counts"] == two["counts"]
    for table in ("playlists", "tracks", "interactions"):
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "one" / f"{table}.parquet"),
                                      pd.read_parquet(tmp_path / "two" / f"{table}.parquet"))


def test_real_popular_playlists_ingest_with_no_rejects(tmp_path):
    manifest = run(shared_data("mpd-popular"), tmp_path / "out", workers=2)
    assert manifest["counts"]["playlists"] == 4991
    assert manifest["counts"]["rejected"] == 0
    tracks = pd.read_parquet(tmp_path / "out" / "tracks.parquet")
    assert tracks["album_name"].isna().all()  # the popular subset has no album fields


def test_real_sample_with_every_field(tmp_path):
    manifest = run(shared_data("mpd-sample"), tmp_path / "out")
    assert manifest["counts"]["playlists"] == 37 and manifest["counts"]["rejected"] == 0
    tracks = pd.read_parquet(tmp_path / "out" / "tracks.parquet")
    for column in ("album_name", "artist_uri", "album_uri", "duration_ms"):
        assert tracks[column].notna().all(), column
    playlists = pd.read_parquet(tmp_path / "out" / "playlists.parquet")
    assert playlists["modified_at"].notna().all() and playlists["num_followers"].notna().all()


def test_json_and_gzip_slices_both_read(tmp_path):
    write_slice(tmp_path / "in", "mpd.slice.0-0.json", [make_playlist(0)])
    payload = json.dumps({"info": {}, "playlists": [make_playlist(1)]}).encode()
    (tmp_path / "in" / "mpd.slice.1-1.json.gz").write_bytes(gzip.compress(payload))
    manifest = run(tmp_path / "in", tmp_path / "out")
    assert manifest["counts"]["playlists"] == 2
    assert [s["format"] for s in manifest["sources"]] == ["mpd", "mpd"]


def test_cleaning_normalises_names_dedupes_and_nulls_optionals(tmp_path):
    tracks = [
        {"pos": 1, "track_uri": "u:2", "track_name": "B", "artist_name": "X"},
        {"pos": 0, "track_uri": "u:1", "track_name": "  Ｃａｆé\u00a0 del  Mar ",
         "artist_name": "X", "duration_ms": "long"},
        {"pos": 2, "track_uri": "u:1", "track_name": "dup", "artist_name": "X"},
    ]
    write_slice(tmp_path / "in", "s.json", [make_playlist(5, "  Chill\tVibes  ", tracks)])
    manifest = run(tmp_path / "in", tmp_path / "out")
    assert manifest["counts"]["duplicate_tracks_dropped"] == 1
    playlists = pd.read_parquet(tmp_path / "out" / "playlists.parquet")
    assert playlists["name"].tolist() == ["Chill Vibes"]
    assert playlists["num_followers"].isna().all()
    catalogue = pd.read_parquet(tmp_path / "out" / "tracks.parquet")
    assert catalogue["track_name"].tolist() == ["Café del Mar", "B"]  # ordered by pos
    assert catalogue["duration_ms"].isna().all()  # mistyped optional field → null
    inter = pd.read_parquet(tmp_path / "out" / "interactions.parquet")
    assert inter["pos"].tolist() == [0, 1]


def test_challenge_set_format(tmp_path):
    challenge = {"date": "2018", "version": "v1", "name": "challenge_set", "playlists": [
        {"pid": 1000002, "name": "spanish playlist", "num_holdouts": 11, "num_tracks": 11,
         "num_samples": 0, "tracks": []},
        {"pid": 1000003, "num_holdouts": 10, "num_tracks": 11, "num_samples": 1,
         "tracks": [{"pos": 0, "track_uri": "u:9", "track_name": "T", "artist_name": "A",
                     "album_name": "L", "artist_uri": "a", "album_uri": "b",
                     "duration_ms": 1}]},
    ]}
    write_slice(tmp_path / "in", "challenge_set.json", [], raw=json.dumps(challenge))
    manifest = run(tmp_path / "in", tmp_path / "out")
    assert manifest["counts"]["playlists"] == 2 and manifest["sources"][0]["format"] == "challenge"
    playlists = pd.read_parquet(tmp_path / "out" / "playlists.parquet")
    assert playlists["num_holdouts"].tolist() == [11, 10]
    assert playlists["name"].isna().tolist() == [False, True]


def test_lyrics_join_on_normalised_artist_and_title(tmp_path):
    tracks = [{"pos": 0, "track_uri": "u:1", "track_name": "Hello, World!",
               "artist_name": "The  Band"},
              {"pos": 1, "track_uri": "u:2", "track_name": "Other", "artist_name": "X"}]
    write_slice(tmp_path / "in", "s.json", [make_playlist(1, tracks=tracks)])
    (tmp_path / "lyrics.csv").write_text('artist,song,text\nthe band,HELLO WORLD,"la la"\n')
    run(tmp_path / "in", tmp_path / "out", lyrics=str(tmp_path / "lyrics.csv"))
    catalogue = pd.read_parquet(tmp_path / "out" / "tracks.parquet")
    assert catalogue["lyrics"].tolist() == ["la la", None]


def test_lyrics_csv_without_required_columns(tmp_path):
    write_slice(tmp_path / "in", "s.json", [make_playlist(1)])
    (tmp_path / "lyrics.csv").write_text("singer,title\nx,y\n")
    with pytest.raises(DataValidationError, match="lacks columns"):
        run(tmp_path / "in", tmp_path / "out", lyrics=str(tmp_path / "lyrics.csv"))
    assert not (tmp_path / "out").exists()


def test_ingest_from_s3_prefix(s3_env, tmp_path):
    for pid in range(3):
        body = json.dumps({"info": {}, "playlists": [make_playlist(pid)]}).encode()
        write_bytes(f"s3://{s3_env}/mpd/mpd.slice.{pid}-{pid}.json", body)
    manifest = run(f"s3://{s3_env}/mpd", tmp_path / "out")
    assert manifest["counts"]["playlists"] == 3
    assert manifest["sources"][0]["uri"] == f"s3://{s3_env}/mpd/mpd.slice.0-0.json"


def test_content_hash_changes_with_the_data(tmp_path):
    write_slice(tmp_path / "a", "s.json", [make_playlist(1)])
    write_slice(tmp_path / "b", "s.json", [make_playlist(2)])
    first = run(tmp_path / "a", tmp_path / "out-a")["content_hash"]
    assert first == run(tmp_path / "a", tmp_path / "out-a2")["content_hash"]
    assert first != run(tmp_path / "b", tmp_path / "out-b")["content_hash"]


# ------------------------------------------------------------------------- bad inputs

def _truncated(folder):
    write_slice(folder, "mpd.slice.0-0.json", [make_playlist(0)])
    write_slice(folder, "mpd.slice.1-1.json", [], raw='{"info": {}, "playlists": [{"pid": 1,')


def _no_pid(folder):
    bad = make_playlist(1)
    del bad["pid"]
    write_slice(folder, "s.json", [make_playlist(0), bad])


def _track_without_uri(folder):
    playlist = make_playlist(0)
    del playlist["tracks"][2]["track_uri"]
    write_slice(folder, "s.json", [playlist])


def _tracks_not_a_list(folder):
    write_slice(folder, "s.json", [make_playlist(0), make_playlist(1, tracks={"0": "x"})])


def _same_pid_twice(folder):
    write_slice(folder, "mpd.slice.0-0.json", [make_playlist(0)])
    write_slice(folder, "mpd.slice.1-1.json", [make_playlist(0, name="other")])


# (make the input, playlists kept when lenient, rejection reason, field named when strict)
BAD_INPUTS = {
    "truncated json": (_truncated, 1, "not valid JSON", None),
    "playlist without pid": (_no_pid, 1, "missing or non-integer pid", "field=pid"),
    "track without track_uri": (_track_without_uri, 1, "missing or empty track_uri",
                                "field=track_uri"),
    "tracks not a list": (_tracks_not_a_list, 1, "tracks is dict, not a list", "field=tracks"),
    "same pid in two slices": (_same_pid_twice, 1, "duplicate pid, first seen in", "pid=0"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_lenient_skips_and_records_it(case, tmp_path):
    make, kept, reason, _ = BAD_INPUTS[case]
    make(tmp_path / "in")
    manifest = run(tmp_path / "in", tmp_path / "out")
    assert manifest["counts"]["playlists"] == kept
    assert manifest["counts"]["rejected"] == 1
    assert reason in manifest["rejected"][0]["reason"]
    assert read_manifest(tmp_path / "out", "dataset")["rejected"] == manifest["rejected"]


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_strict_fails_naming_file_pid_field_and_fix(case, tmp_path):
    make, _, reason, where = BAD_INPUTS[case]
    make(tmp_path / "in")
    with pytest.raises(DataValidationError) as info:
        run(tmp_path / "in", tmp_path / "out", strict=True)
    message = str(info.value)
    assert reason in message and "file=" in message and "Fix:" in message
    if where:
        assert where in message
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["in"]  # no partial or temp folder


def test_empty_folder_is_an_error_and_writes_nothing(tmp_path):
    (tmp_path / "in").mkdir()
    with pytest.raises(DataValidationError, match="no MPD slices found"):
        run(tmp_path / "in", tmp_path / "out")
    assert [p.name for p in tmp_path.iterdir()] == ["in"]


def test_only_invalid_records_is_an_error(tmp_path):
    write_slice(tmp_path / "in", "s.json", [], raw="{not json")
    with pytest.raises(DataValidationError, match="no valid playlists"):
        run(tmp_path / "in", tmp_path / "out")
    assert [p.name for p in tmp_path.iterdir()] == ["in"]


def test_missing_s3_bucket_is_a_clear_error(s3_env, tmp_path):
    with pytest.raises(StorageNotFoundError, match="bucket 'absent-bucket' does not exist"):
        run("s3://absent-bucket/mpd", tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_missing_local_folder(tmp_path):
    with pytest.raises(StorageNotFoundError):
        run(tmp_path / "nowhere", tmp_path / "out")


@pytest.mark.parametrize("source", ["synthetic", "mpd-sample"])
def test_fast_and_careful_paths_give_identical_tables(source, synthetic_slices, tmp_path,
                                                      monkeypatch):
    from llarapp.data import fastpath

    folder = synthetic_slices if source == "synthetic" else shared_data(source)
    fast = run(folder, tmp_path / "fast")
    monkeypatch.setattr(fastpath, "decode", lambda payload: None)  # force the careful path
    careful = run(folder, tmp_path / "careful")
    assert fast["counts"] == careful["counts"]
    for table in ("playlists", "tracks", "interactions"):
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "fast" / f"{table}.parquet"),
                                      pd.read_parquet(tmp_path / "careful" / f"{table}.parquet"))


def test_one_bad_record_sends_only_its_slice_down_the_careful_path(tmp_path):
    write_slice(tmp_path / "in", "a.json", [make_playlist(0), make_playlist(1)])
    write_slice(tmp_path / "in", "b.json", [make_playlist(2), {"name": "no pid", "tracks": []}])
    manifest = run(tmp_path / "in", tmp_path / "out")
    assert manifest["counts"]["playlists"] == 3 and manifest["counts"]["rejected"] == 1


def test_uri_with_surrounding_whitespace_is_stripped_and_deduplicated(tmp_path):
    tracks = [{"pos": 0, "track_uri": "u:1", "track_name": "A", "artist_name": "X"},
              {"pos": 1, "track_uri": " u:1 ", "track_name": "A", "artist_name": "X"}]
    write_slice(tmp_path / "in", "s.json", [make_playlist(1, tracks=tracks)])
    manifest = run(tmp_path / "in", tmp_path / "out")
    assert manifest["counts"]["tracks"] == 1
    assert manifest["counts"]["duplicate_tracks_dropped"] == 1
