"""Held-out playlists as a stream of continuation requests, with the answers kept aside.

Each held-out playlist of the split (title, its first k seed tracks by challenge
category) becomes one V1 instance; its remaining tracks are the targets the response is
scored against. Replaying the split the served model was trained with is what keeps the
targets unseen.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from llarapp.data.dataset import Dataset, Split
from llarapp.errors import DataValidationError


@dataclass
class Replay:
    pid: int
    category: str
    instance: dict  # the V1 instance sent to the server
    targets: list[str]  # track URIs the playlist continues with


def replay_stream(dataset: Dataset, split: Split, which: str = "test", limit: int = 0,
                  k: int = 10, seed: int = 0) -> list[Replay]:
    """The held-out ``which`` playlists in a seeded random order, ``limit`` of them (0: all)."""
    heldout = split.heldout_for(which)
    if heldout.empty:
        known = sorted(split.heldout["split"].unique())
        raise DataValidationError(f"the split has no {which!r} playlists to replay; choose "
                                  f"one of {known}")
    order = np.random.default_rng(seed).permutation(len(heldout))
    if limit:
        order = order[:limit]
    uris = dataset.tracks["track_uri"].to_numpy()
    return [Replay(int(row.pid), str(row.category),
                   {"playlist_name": str(row.name), "track_uris": uris[row.seeds].tolist(),
                    "k": k},
                   uris[row.targets].tolist())
            for row in heldout.iloc[order].itertuples(index=False)]
