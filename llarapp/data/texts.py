"""The texts the encoders see, torch-free so training and serving build the same strings.

Item text is "track — artist — album" (missing parts dropped), plus the start of the
lyrics when the table has them. Playlist text is the title.
"""

from __future__ import annotations

import pandas as pd

SEPARATOR = " — "


def _clean(column: pd.Series) -> pd.Series:
    return column.fillna("").astype(str).str.strip()


def item_texts(tracks: pd.DataFrame, lyrics: bool = True, lyrics_chars: int = 200
               ) -> list[str]:
    """"track — artist — album[ — lyrics…]" per track row, skipping empty parts."""
    parts = [_clean(tracks[c]) for c in ("track_name", "artist_name", "album_name")]
    if lyrics and lyrics_chars and "lyrics" in tracks:
        parts.append(_clean(tracks["lyrics"]).str.slice(0, lyrics_chars)
                     .str.replace(r"\s+", " ", regex=True))
    return [SEPARATOR.join(p for p in row if p) for row in zip(*parts, strict=True)]


def playlist_texts(playlists: pd.DataFrame) -> list[str]:
    return _clean(playlists["name"]).tolist()
