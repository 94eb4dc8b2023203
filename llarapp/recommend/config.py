"""The recommend stage's config, validated at the entry point."""

from __future__ import annotations

from dataclasses import dataclass

from llarapp.config import StageConfig, require

FORMATS = ("parquet", "challenge")
CHALLENGE_K = 500  # the RecSys Challenge 2018 list length


@dataclass
class RecommendConfig(StageConfig):
    format: str = "parquet"  # parquet: pid, rank, track_uri, score, reason; challenge: CSV
    k: int = CHALLENGE_K
    batch_size: int = 32  # playlists per engine call
    processes: int = 1  # worker processes, each with cpus/processes threads and its own bundle copy
    holdout_last: int = 0  # > 0: the last N tracks of each playlist are targets, not seeds
    targets: str = ""  # the full playlists (MPD JSON): targets are their tracks beyond seeds
    precision: str = "int8"
    team_info: str = "llarapp,main,llarapp@example.com"  # the submission's first line

    def validate(self) -> None:
        require(self.format in FORMATS, f"format must be one of {', '.join(FORMATS)}")
        require(self.k >= 1 and self.batch_size >= 1 and self.processes >= 1,
                "k, batch_size and processes must be >= 1")
        require(self.format != "challenge" or self.k == CHALLENGE_K,
                f"the challenge format needs k {CHALLENGE_K}; drop --set k or use parquet")
        require(self.holdout_last >= 0, "holdout_last must be >= 0")
        require(not (self.targets and self.holdout_last),
                "give targets (the full playlists) or holdout_last, not both")
        require(self.precision in ("int8", "fp32"), "precision must be int8 or fp32")
        require(len(self.team_info.split(",")) == 3, "team_info is 'team name,track,email' "
                "(three comma-separated fields, the challenge's first line)")
