"""The RecSys Challenge 2018 submission: writing it, and checking it against the rules.

A submission is CSV text: a ``team_info,<team>,<track>,<email>`` line, then one line per
challenge playlist, ``pid, uri_1, …, uri_500``. The rules: every pid of the challenge set
exactly once, 500 unique track URIs each, none of them one of that playlist's seed tracks,
every URI ``spotify:track:`` plus 22 base-62 characters. Blank lines and ``#`` comments are
allowed. :func:`check_submission` lists every fault, so one run shows them all.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from llarapp.recommend.config import CHALLENGE_K
from llarapp.recommend.playlists import InputPlaylist

TRACK_URI = re.compile(r"^spotify:track:[0-9A-Za-z]{22}$")
MAX_FAULTS_PER_KIND = 5  # examples shown per kind of fault; the count is always complete


def submission_text(team_info: str, lists: Iterable[tuple[int, Sequence[str]]]) -> str:
    lines = [f"team_info,{team_info}"]
    lines += [", ".join([str(pid), *uris]) for pid, uris in lists]
    return "\n".join(lines) + "\n"


def check_submission(text: str, playlists: Sequence[InputPlaylist]) -> list[str]:
    """Every way ``text`` breaks the rules for these challenge playlists ([] if none)."""
    faults: dict[str, list[str]] = {}

    def fault(kind: str, detail: str) -> None:
        faults.setdefault(kind, []).append(detail)

    lines = [line.strip() for line in text.splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    if not lines or not lines[0].startswith("team_info"):
        fault("the first line must be 'team_info,<team>,<track>,<email>'", "line 1")
    elif len(lines[0].split(",")) != 4:
        fault("team_info needs three fields: team name, track, email", lines[0])
    seeds = {p.pid: {t.track_uri for t in p.seeds} for p in playlists}
    answered: set[int] = set()
    for number, line in enumerate(lines[1:], start=2):
        cells = [c.strip() for c in line.split(",")]
        try:
            pid = int(cells[0])
        except ValueError:
            fault("a line must start with an integer pid", f"line {number}: {cells[0]!r}")
            continue
        uris = cells[1:]
        if pid not in seeds:
            fault("pid not in the challenge set", f"pid {pid}")
        if pid in answered:
            fault("pid answered twice", f"pid {pid}")
        answered.add(pid)
        if len(uris) != CHALLENGE_K:
            fault(f"a playlist needs exactly {CHALLENGE_K} tracks", f"pid {pid}: {len(uris)}")
        if len(set(uris)) != len(uris):
            fault("a track appears twice in one playlist", f"pid {pid}")
        if seed := sorted(set(uris) & seeds.get(pid, set())):
            fault("a recommended track is one of the playlist's seeds", f"pid {pid}: {seed[0]}")
        if bad := [u for u in uris if not TRACK_URI.match(u)]:
            fault("not a track URI (spotify:track: + 22 characters)", f"pid {pid}: {bad[0]!r}")
    for pid in sorted(set(seeds) - answered):
        fault("a challenge pid has no line", f"pid {pid}")
    return [f"{kind}: {len(details)}× (" + "; ".join(details[:MAX_FAULTS_PER_KIND])
            + (", …" if len(details) > MAX_FAULTS_PER_KIND else "") + ")"
            for kind, details in faults.items()]
