"""A short, honest reason per recommendation: which seed track or which title word led
there. Seeds are compared in both spaces the retriever scored (graph and text); title
words are matched against the track's predicted tags, name and artist.

A title word matches a name or artist as the regex ``\bword\b`` would: it is one of the
``\\w+`` tokens of "name artist", lowercased. Both are looked up in inverted indexes (word →
sorted items) built once, and an item's membership is a binary search in the word's
postings, so a reason costs O(log postings) per title word however common the word is
(``np.isin`` sorted the postings on every call: at 2.26 M tracks that was half the
server's CPU)."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

from llarapp.models.hybrid import normalise_rows

STOPWORDS = frozenset("the and for with from you your my our this that its are was his her "
                      "all new top best songs song music playlist mix vol".split())


TITLE_WORD = re.compile(r"[^\W_]{3,}")
TOKEN = re.compile(r"\w+")


def title_words(title: str) -> list[str]:
    return [w for w in dict.fromkeys(TITLE_WORD.findall(title.lower())) if w not in STOPWORDS]


def inverted_index(words_per_item: Sequence[Sequence[str]]) -> dict[str, np.ndarray]:
    """word → the sorted items that have it; only words a title can ask for (title_words)."""
    postings: dict[str, list[int]] = {}
    for item, words in enumerate(words_per_item):
        for word in set(words):
            if len(word) >= 3 and word not in STOPWORDS and TITLE_WORD.fullmatch(word):
                postings.setdefault(word, []).append(item)
    return {word: np.asarray(items, np.int32) for word, items in postings.items()}


def in_sorted(values: np.ndarray, postings: np.ndarray) -> np.ndarray:
    """``np.isin(values, postings)`` for ascending ``postings``, by binary search."""
    if not len(postings):
        return np.zeros(len(values), bool)
    at = np.minimum(np.searchsorted(postings, values), len(postings) - 1)
    return postings[at] == values


class Explainer:
    def __init__(self, catalogue: pd.DataFrame, item_graph: np.ndarray, item_text: np.ndarray):
        names = catalogue["track_name"].fillna("").astype(str)
        artists = catalogue["artist_name"].fillna("").astype(str)
        searchable = (names + " " + artists).str.lower()
        self.named = inverted_index([TOKEN.findall(text) for text in searchable])
        tags = catalogue["tags"] if "tags" in catalogue else pd.Series([[]] * len(catalogue))
        self.tagged = inverted_index([list(t) if t is not None else [] for t in tags])
        self.item_graph_unit = normalise_rows(item_graph)  # once, not per response
        self.item_text = item_text

    def title_matches(self, items: np.ndarray, words: Sequence[str]) -> list[str]:
        """Per item, the first title word (in title order) that is one of its tags or, else,
        in its name or artist; "" for none."""
        out = [""] * len(items)
        open_ = np.ones(len(items), bool)
        for word in words:
            for index, because in ((self.tagged, "is one of its tags"),
                                   (self.named, "is in its name or artist")):
                having = index.get(word)
                if having is None:
                    continue
                hit = open_ & in_sorted(items, having)
                for row in np.flatnonzero(hit).tolist():
                    out[row] = f"the title word '{word}' {because}"
                open_ &= ~hit
        return out

    def explain(self, items: np.ndarray, title: str, seed_labels: Sequence[str],
                seed_graph: np.ndarray, seed_text: np.ndarray) -> list[str]:
        """One reason per item. ``seed_*``: the playlist's usable seeds (labels, graph and
        text vectors, aligned)."""
        if len(items) == 0:
            return []
        matches = self.title_matches(items, title_words(title))
        if len(seed_labels):
            closeness = (self.item_graph_unit[items] @ normalise_rows(seed_graph).T
                         + self.item_text[items] @ seed_text.T)
            nearest = closeness.argmax(axis=1)
            return [f"close to {seed_labels[j]} in the playlist" + (f"; {m}" if m else "")
                    for j, m in zip(nearest, matches, strict=True)]
        if title.strip():
            return [m or f"playlists titled like '{title.strip()}' have it" for m in matches]
        return ["popular with playlists like this one (no seed or title to go on)"] * len(items)
