"""A short, honest reason per recommendation: which seed track or which title word led
there. Seeds are compared in both spaces the retriever scored (graph and text); title
words are matched against the track's predicted tags, name and artist."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

from llarapp.models.hybrid import normalise_rows

STOPWORDS = frozenset("the and for with from you your my our this that its are was his her "
                      "all new top best songs song music playlist mix vol".split())


def title_words(title: str) -> list[str]:
    return [w for w in dict.fromkeys(re.findall(r"[^\W_]{3,}", title.lower()))
            if w not in STOPWORDS]


class Explainer:
    def __init__(self, catalogue: pd.DataFrame, item_graph: np.ndarray, item_text: np.ndarray):
        names = catalogue["track_name"].fillna("").astype(str)
        artists = catalogue["artist_name"].fillna("").astype(str)
        self.searchable = (names + " " + artists).str.lower().tolist()  # what words match
        tags = catalogue["tags"] if "tags" in catalogue else pd.Series([[]] * len(catalogue))
        self.tags = [list(t) if t is not None else [] for t in tags]
        self.item_graph_unit = normalise_rows(item_graph)  # once, not per response
        self.item_text = item_text

    def _title_match(self, item: int, words: Sequence[tuple[str, re.Pattern]]) -> str:
        for word, pattern in words:
            if word in self.tags[item]:
                return f"the title word '{word}' is one of its tags"
            if pattern.search(self.searchable[item]):
                return f"the title word '{word}' is in its name or artist"
        return ""

    def explain(self, items: np.ndarray, title: str, seed_labels: Sequence[str],
                seed_graph: np.ndarray, seed_text: np.ndarray) -> list[str]:
        """One reason per item. ``seed_*``: the playlist's usable seeds (labels, graph and
        text vectors, aligned)."""
        if len(items) == 0:
            return []
        words = [(w, re.compile(rf"\b{re.escape(w)}\b")) for w in title_words(title)]
        matches = ([self._title_match(i, words) for i in items.tolist()] if words
                   else [""] * len(items))
        if len(seed_labels):
            closeness = (self.item_graph_unit[items] @ normalise_rows(seed_graph).T
                         + self.item_text[items] @ seed_text.T)
            nearest = closeness.argmax(axis=1)
            return [f"close to {seed_labels[j]} in the playlist" + (f"; {m}" if m else "")
                    for j, m in zip(nearest, matches, strict=True)]
        if title.strip():
            return [m or f"playlists titled like '{title.strip()}' have it" for m in matches]
        return ["popular with playlists like this one (no seed or title to go on)"] * len(items)
