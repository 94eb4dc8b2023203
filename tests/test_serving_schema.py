"""The V1 request schema: limits, and errors that name the field."""

import pytest

from llarapp.errors import InvalidRequestError
from llarapp.serving.schema import MAX_K, MAX_TRACKS, parse_v1


def one(**instance):
    return {"instances": [instance]}


def test_a_valid_request_becomes_engine_requests():
    (instance,) = parse_v1(one(playlist_name="  road trip ", track_uris=["spotify:track:1"],
                               tracks=[{"track_name": "Song", "artist_name": "Band"}], k=5,
                               exclude_seen=False))
    request = instance.to_request()
    assert request.playlist_name == "road trip" and request.track_uris == ["spotify:track:1"]
    assert request.k == 5 and request.exclude_seen is False
    assert instance.tracks[0].artist_name == "Band" and instance.tracks[0].album_name == ""


@pytest.mark.parametrize("body, field, message", [
    ([], "body", "JSON object"),
    ({}, "instances", "Field required"),
    ({"instances": []}, "instances", "at least 1 item"),
    ({"instances": [{}] * 65}, "instances", "at most 64 items"),
    (one(), "instances.0", "give a playlist_name, track_uris or tracks"),
    (one(playlist_name="x", k=0), "instances.0.k", "greater than or equal to 1"),
    (one(playlist_name="x", k=MAX_K + 1), "instances.0.k", "less than or equal to 500"),
    (one(playlist_name="x", k="5"), "instances.0.k", "valid integer"),
    (one(playlist_name="x", k=True), "instances.0.k", "valid integer"),
    (one(playlist_name=5), "instances.0.playlist_name", "valid string"),
    (one(playlist_name="a" * 301), "instances.0.playlist_name", "at most 300 characters"),
    (one(track_uris=["u"] * (MAX_TRACKS + 1)), "instances.0.track_uris", "at most 500 items"),
    (one(tracks=[{"track_name": "t"}] * 10_000), "instances.0.tracks", "got 10000"),
    (one(track_uris=["u"] * 300, tracks=[{"track_name": "t"}] * 201), "instances.0",
     "at most 500 tracks"),
    (one(track_uris=[""]), "instances.0.track_uris.0", "at least 1 character"),
    (one(track_uris="spotify:track:1"), "instances.0.track_uris", "valid list"),
    (one(tracks=[{"artist_name": "x"}]), "instances.0.tracks.0.track_name", "Field required"),
    (one(playlist_name="x", bogus=1), "instances.0.bogus", "Extra inputs"),
    (one(playlist_name="x", exclude_seen="yes"), "instances.0.exclude_seen", "valid boolean"),
])
def test_bad_requests_name_the_field(body, field, message):
    with pytest.raises(InvalidRequestError) as caught:
        parse_v1(body)
    assert caught.value.field == field
    assert message in str(caught.value)
