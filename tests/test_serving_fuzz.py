"""Fuzzing the live server's V1 and V2 endpoints with hypothesis: whatever the body, the
answer is never a 5xx (bad input is the client's fault: a 4xx)."""

from __future__ import annotations

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.slow

FUZZ = settings(max_examples=120, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])

scalars = (st.none() | st.booleans() | st.integers(-2**40, 2**40)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=12), inner, max_size=4),
                           max_leaves=12)
uris = st.one_of(st.text(max_size=130), st.sampled_from(["spotify:track:x", ""]))
track = st.fixed_dictionaries({"track_name": st.text(max_size=310)},
                              optional={"artist_name": scalars, "album_name": st.text(max_size=5),
                                        "track_uri": uris, "extra": scalars})
instance = st.fixed_dictionaries({}, optional={
    "playlist_name": st.one_of(st.text(max_size=310), scalars),
    "track_uris": st.one_of(st.lists(uris, max_size=6), scalars),
    "tracks": st.one_of(st.lists(track, max_size=3), scalars),
    "k": st.one_of(st.integers(-5, 600), scalars),
    "exclude_seen": scalars, "unexpected": scalars})
v1_bodies = st.one_of(json_values, st.fixed_dictionaries(
    {"instances": st.one_of(st.lists(instance, max_size=3), json_values)}))

datatypes = st.sampled_from(["BYTES", "INT32", "INT64", "FP32", "BOOL", "UINT8", "FP16", "X"])
tensor = st.fixed_dictionaries({
    "name": st.sampled_from(["track_uris", "playlist_name", "k", "exclude_seen", "other"]),
    "shape": st.lists(st.integers(-1, 4), max_size=3),
    "datatype": datatypes,
    "data": st.lists(scalars, max_size=4)})
v2_bodies = st.one_of(json_values, st.fixed_dictionaries(
    {"inputs": st.one_of(st.lists(tensor, max_size=4), json_values)},
    optional={"id": st.one_of(st.text(max_size=10), scalars), "parameters": json_values}))


def post(server, path, body):
    answer = httpx.post(f"{server.url}{path}", json=body, timeout=60)
    assert answer.status_code < 500, (body, answer.status_code, answer.text)
    return answer


@FUZZ
@given(body=v1_bodies)
def test_v1_never_answers_5xx(server, body):
    post(server, "/v1/models/llarapp:predict", body)


@FUZZ
@given(body=v2_bodies)
def test_v2_never_answers_5xx(server, body):
    post(server, "/v2/models/llarapp/infer", body)


@FUZZ
@given(raw=st.binary(max_size=200))
def test_raw_bytes_never_answer_5xx(server, raw):
    for path in ("/v1/models/llarapp:predict", "/v2/models/llarapp/infer"):
        answer = httpx.post(f"{server.url}{path}", content=raw,
                            headers={"content-type": "application/json"}, timeout=60)
        assert answer.status_code < 500, (raw, answer.text)
