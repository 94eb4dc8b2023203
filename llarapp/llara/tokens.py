"""The prompt's special tokens and a tokenizer wrapper; torch-free, so serving shares them.

:class:`TokenEncoder` wraps a `tokenizers` fast tokenizer. Training builds it from the
transformers tokenizer's backend and serving from the bundle's ``tokenizer.json``, so the
two produce the same ids by construction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from llarapp.errors import ConfigError

MAX_CANDIDATES = 26  # labels (A) … (Z)
HISTORY_SLOT, CANDIDATE_SLOT, PLAYLIST_SLOT_TOKEN, PLACEHOLDER = "[HIS]", "[CAN]", "[USR]", "[PH]"
LABELS = tuple(f"({chr(ord('A') + i)})" for i in range(MAX_CANDIDATES))
SPECIAL_TOKENS = (HISTORY_SLOT, CANDIDATE_SLOT, PLAYLIST_SLOT_TOKEN, PLACEHOLDER, *LABELS)


@dataclass(frozen=True)
class SpecialIds:
    history_slot: int
    candidate_slot: int
    playlist_slot: int
    placeholder: int
    labels: tuple[int, ...]

    @property
    def slots(self) -> tuple[int, int, int]:
        return self.history_slot, self.candidate_slot, self.playlist_slot

    @property
    def all(self) -> list[int]:
        return [*self.slots, self.placeholder, *self.labels]


class TokenEncoder:
    """Texts → token ids with no [CLS]/[SEP]. Special-token strings inside a text are split
    as plain text, so a title such as "Intro (A)" can never become a label token."""

    def __init__(self, tokenizer):
        from tokenizers import Tokenizer

        # A private copy: transformers changes its backend's truncation and padding per call.
        self.tokenizer = Tokenizer.from_str(tokenizer.to_str())
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        self.tokenizer.encode_special_tokens = True

    @classmethod
    def of(cls, tokenizer) -> TokenEncoder:
        """From a TokenEncoder, a `tokenizers.Tokenizer` or a transformers fast tokenizer."""
        if isinstance(tokenizer, TokenEncoder):
            return tokenizer
        backend = getattr(tokenizer, "backend_tokenizer", tokenizer)
        if not hasattr(backend, "encode_batch"):
            raise ConfigError(f"{type(tokenizer).__name__} is not a fast tokenizer; LLaRA needs "
                              "one (a tokenizer.json) so serving can tokenize without "
                              "transformers")
        return cls(backend)

    @classmethod
    def from_file(cls, path: str | Path) -> TokenEncoder:
        from tokenizers import Tokenizer

        return cls(Tokenizer.from_file(str(path)))

    def __call__(self, texts: Sequence[str], limit: int | None = None) -> list[list[int]]:
        encoded = self.tokenizer.encode_batch(list(texts), add_special_tokens=False)
        return [e.ids[:limit] if limit is not None else e.ids for e in encoded]

    def token_id(self, token: str) -> int:
        found = self.tokenizer.token_to_id(token)
        if found is None:
            raise ConfigError(f"the tokenizer has no {token!r} token; it was not saved with "
                              "the LLaRA special tokens")
        return found

    def special_ids(self) -> SpecialIds:
        ids = [self.token_id(t) for t in SPECIAL_TOKENS]
        return SpecialIds(*ids[:4], labels=tuple(ids[4:]))
