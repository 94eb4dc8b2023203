"""Fuzzing the live server: whatever the client sends, the answer is never a 5xx (bad
input is the client's fault: a 4xx).

- V1 and V2 bodies, and raw bytes, drawn by hypothesis;
- V2 from the server's own OpenAPI (``/openapi.json``), cases drawn by schemathesis;
- headers and framing on a raw socket: content-type, content-length (wrong, huge, not a
  number), ``inference-header-content-length``, transfer and content encodings, and
  CloudEvents ``ce-*`` headers;
- bodies at the size limit: one byte under, at, and over ``max_body_bytes``.
"""

from __future__ import annotations

import json

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error

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


# -- V2 against the server's own OpenAPI (schemathesis) ---------------------------------

@pytest.fixture(scope="module")
def v2_openapi(server):
    """The live server's OpenAPI, narrowed to V2 inference (the models' routes)."""
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    return schema.include(path_regex=r"^/v2/models")


def test_v2_fuzzed_from_its_openapi_never_answers_5xx(v2_openapi):
    """Every V2 model operation, with cases schemathesis draws from the OpenAPI (its
    pytest plugin does not run under pytest 9, so hypothesis drives its strategies)."""
    operations = [result.ok() for result in v2_openapi.get_all_operations()]
    assert {op.path for op in operations} >= {"/v2/models/{model_name}/infer",
                                               "/v2/models/{model_name}/ready"}
    for operation in operations:
        @settings(max_examples=40, deadline=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def call(case):
            if case.path_parameters and "model_name" in case.path_parameters:
                case.path_parameters["model_name"] = "llarapp"  # reach the model, not a 404
            response = case.call(timeout=60)
            case.validate_response(response, checks=[not_a_server_error])

        call()


# -- headers and framing, on a raw socket --------------------------------------------------

def raw_request(server, path: str, headers: dict[str, str], body: bytes) -> int | None:
    """Send exactly these bytes; the status code, or None if the server closed without one."""
    import socket

    host, port = server.url.removeprefix("http://").split(":")
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    data = f"POST {path} HTTP/1.1\r\nHost: {host}\r\n{head}Connection: close\r\n\r\n"
    length = headers.get("Content-Length", "")
    framed = (length.isdigit() and int(length) <= len(body)
              and "Transfer-Encoding" not in headers)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        try:
            sock.sendall(data.encode("latin-1") + body)
            if not framed:  # the server would wait for the rest: end the body here
                sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # it answered and closed before taking everything
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except (ConnectionResetError, TimeoutError):  # refused framing, or still waiting
            pass
    status = answer.split(b" ", 2)[1] if answer.startswith(b"HTTP/1.1 ") else None
    return int(status) if status else None


header_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)
content_types = st.one_of(header_text, st.sampled_from([
    "application/json", "application/octet-stream", "application/cloudevents+json",
    "text/plain", "multipart/form-data; boundary=x", "application/json; charset=latin-1"]))
lengths = st.one_of(st.integers(-5, 2**70).map(str), header_text)
cloud_events = st.fixed_dictionaries({}, optional={
    "ce-specversion": st.sampled_from(["1.0", "0.3", "2"]) | header_text,
    "ce-type": header_text, "ce-source": header_text, "ce-id": header_text,
    "ce-time": header_text})
raw_headers = st.fixed_dictionaries({"Content-Type": content_types}, optional={
    "Content-Length": lengths, "inference-header-content-length": lengths,
    "Transfer-Encoding": st.sampled_from(["chunked", "gzip", "identity"]) | header_text,
    "Content-Encoding": st.sampled_from(["gzip", "br"]) | header_text})
VALID_V2 = json.dumps({"inputs": [{"name": "playlist_name", "shape": [1], "datatype": "BYTES",
                                   "data": ["road trip"]}]}).encode()
small_bodies = st.one_of(st.just(VALID_V2), st.binary(max_size=120),
                         v2_bodies.map(lambda b: json.dumps(b).encode()))


@FUZZ
@given(headers=raw_headers, events=cloud_events, body=small_bodies,
       path=st.sampled_from(["/v1/models/llarapp:predict", "/v2/models/llarapp/infer"]))
def test_headers_never_answer_5xx(server, headers, events, body, path):
    headers.setdefault("Content-Length", str(len(body)))  # unless drawn: the true length
    status = raw_request(server, path, headers | events, body)
    assert status is None or status < 500, (headers, events, body[:80], status)


@pytest.mark.parametrize("extra", [-1, 0, 1, 4096])
def test_bodies_at_the_size_limit_never_answer_5xx(server, extra):
    limit = 1 << 20  # the server fixture runs with the default max_body_bytes
    padding = limit + extra - len(b'{"instances": [{"playlist_name": ""}]}')
    body = b'{"instances": [{"playlist_name": "' + b"x" * padding + b'"}]}'
    assert len(body) == limit + extra
    status = raw_request(server, "/v1/models/llarapp:predict",
                         {"Content-Type": "application/json",
                          "Content-Length": str(len(body))}, body)
    assert status == (413 if extra > 0 else 400)  # over: 413 unread; at or under: the schema


CLOUD_EVENT = {"ce-specversion": "1.0", "ce-type": "t", "ce-source": "s", "ce-id": "1"}


@pytest.mark.parametrize("path, headers, body", [  # each once answered 500 (found by fuzzing)
    ("/v2/models/llarapp/infer", {"Content-Type": "", "inference-header-content-length": ""},
     VALID_V2),
    ("/v2/models/llarapp/infer", {"Content-Type": "application/octet-stream",
                                  "inference-header-content-length": "99999"}, VALID_V2),
    ("/v1/models/llarapp:predict", {"Content-Type": "application/json", **CLOUD_EVENT}, b""),
], ids=["binary length not a number", "binary length past the body", "empty CloudEvent"])
def test_framings_kserve_cannot_decode_are_a_400(server, path, headers, body):
    status = raw_request(server, path, headers | {"Content-Length": str(len(body))}, body)
    assert status == 400
