"""The soak benchmark's own logic (benchmarks/soak.py): the request mix, and an acceptance
that fails on a 5xx, on an invalid request that was not refused with a 4xx, and on memory
that grows after warm-up."""

import json
import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from soak import LIMITS, MIX, invalid_bodies, request_mix, summarise  # noqa: E402

PLAYLISTS = [{"playlist_name": f"p{i}", "k": 10, "track_uris": [f"spotify:track:{i}"]}
             for i in range(20)]


def test_the_mix_has_every_kind_and_every_invalid_body_breaks_a_limit():
    mix = request_mix(PLAYLISTS, 2000, seed=0)
    kinds = pd.Series([kind.split(":")[0] for kind, _ in mix]).value_counts(normalize=True)
    for kind, share in MIX.items():
        assert kinds[kind] == pytest.approx(share, abs=0.03)
    bodies = dict(invalid_bodies())
    assert len(bodies["over_body_limit"]) > LIMITS.max_body_bytes
    texts = json.loads(bodies["over_text_limit"])["instances"][0]["tracks"]
    assert len(texts) + 1 > LIMITS.max_texts  # with its title


def records(statuses: list[tuple[str, object]]) -> pd.DataFrame:
    return pd.DataFrame([{"kind": kind, "status": status, "latency_ms": 10.0 + i,
                          "t": i / 10} for i, (kind, status) in enumerate(statuses)])


MEMORY = pd.DataFrame({"t": [0, 1, 2, 3], "anonymous_gib": [1.0, 1.2, 1.21, 1.22]})


@pytest.mark.parametrize("statuses, memory, failed", [
    ([("seeded", 200), ("invalid:bad_field", 400)] * 10, MEMORY, set()),
    ([("seeded", 200), ("seeded", 503)] * 10, MEMORY, {"no_5xx"}),
    ([("seeded", 200), ("invalid:bad_field", 200)] * 10, MEMORY, {"every_invalid_4xx"}),
    ([("seeded", 200), ("invalid:not_json", "transport:ReadError")] * 10, MEMORY,
     {"every_invalid_4xx"}),
    ([("seeded", 200)] * 20, MEMORY.assign(anonymous_gib=[1.0, 1.2, 1.3, 1.4]),
     {"memory_growth_at_most_5pct"}),
])
def test_the_acceptance_fails_on_each_breach(statuses, memory, failed):
    summary, windows = summarise(records(statuses), memory, warmup=0.1, window=5)
    assert {name for name, ok in summary["acceptance"].items() if not ok} == failed
    assert len(windows) == 4 and summary["requests"] == 20
