"""Optional lyrics: a CSV with ``artist, song, text`` joined on normalised artist + title."""

from __future__ import annotations

import io
import re
import unicodedata

import pandas as pd

from llarapp.errors import DataValidationError
from llarapp.storage import exists, parse_uri, read_bytes

_NON_WORD = re.compile(r"[^\w\s]")


def join_key(artist: str, title: str) -> str:
    """Case-, accent-width- and punctuation-insensitive key for one song."""
    def norm(text: str) -> str:
        text = unicodedata.normalize("NFKC", text).casefold()
        return " ".join(_NON_WORD.sub(" ", text).split())
    return f"{norm(artist)}\x00{norm(title)}"


def load(spec: str, input_uri: str) -> dict[str, str] | None:
    """``spec`` is a CSV URI, ``"none"``, or ``"auto"`` (``lyrics.csv`` beside the slices)."""
    if spec == "none":
        return None
    if spec == "auto":
        loc = parse_uri(input_uri)
        if loc.key.endswith((".json", ".json.gz")):  # a single slice file: no folder to look in
            return None
        spec = str(loc.join("lyrics.csv"))
        if not exists(spec):
            return None
    frame = pd.read_csv(io.BytesIO(read_bytes(spec)), dtype=str, keep_default_na=False)
    missing = {"artist", "song", "text"} - set(frame.columns)
    if missing:
        raise DataValidationError(
            f"lyrics CSV lacks columns {sorted(missing)}", file=spec,
            fix="the lyrics CSV needs the columns artist, song, text",
        )
    return {join_key(a, s): t for a, s, t in zip(frame["artist"], frame["song"], frame["text"],
                                                  strict=True) if t}


def match(lyrics: dict[str, str], artists: list[str], titles: list[str]) -> list[str | None]:
    if not lyrics:
        return [None] * len(artists)
    return [lyrics.get(join_key(a, t)) for a, t in zip(artists, titles, strict=True)]
