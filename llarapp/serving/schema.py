"""The V1 predict API's request schema and its limits (pydantic), with no torch.

Every limit bounds the work one request can cause: at most ``MAX_TRACKS`` seed tracks,
``MAX_K`` recommendations and ``MAX_INSTANCES`` playlists, and bounded strings. A bad
request raises :class:`InvalidRequestError` naming the first offending field, which the
server turns into a 400, never a 500.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from llarapp.errors import InvalidRequestError
from llarapp.serving.engine import Request, TrackMeta

MAX_TRACKS = 500
MAX_K = 500
MAX_INSTANCES = 64
MAX_TEXT = 300
MAX_URI = 120

Text = Annotated[str, StringConstraints(max_length=MAX_TEXT, strip_whitespace=True)]
Uri = Annotated[str, StringConstraints(min_length=1, max_length=MAX_URI,
                                       strip_whitespace=True)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    @model_validator(mode="before")
    @classmethod
    def _bounded_lists(cls, data: Any) -> Any:
        """Refuse an oversized list before validating its items (pydantic checks a list's
        length only after every item, so a huge list would cost time first)."""
        if isinstance(data, dict):
            for name, field in cls.model_fields.items():
                limit = next((m.max_length for m in field.metadata
                              if getattr(m, "max_length", None) is not None), None)
                value = data.get(name)
                if limit is not None and isinstance(value, list) and len(value) > limit:
                    raise ValueError(f"{name}: at most {limit} items, got {len(value)}")
        return data


class TrackText(_Strict):
    """A track the catalogue may not know, described by its metadata."""

    track_name: Annotated[str, StringConstraints(min_length=1, max_length=MAX_TEXT,
                                                 strip_whitespace=True)]
    artist_name: Text = ""
    album_name: Text = ""
    track_uri: Uri | None = None


class Instance(_Strict):
    playlist_name: Text = ""
    track_uris: list[Uri] = Field(default_factory=list, max_length=MAX_TRACKS)
    tracks: list[TrackText] = Field(default_factory=list, max_length=MAX_TRACKS)
    k: int = Field(10, ge=1, le=MAX_K)
    exclude_seen: bool = True

    @model_validator(mode="after")
    def _has_a_query(self) -> Instance:
        if not (self.playlist_name or self.track_uris or self.tracks):
            raise ValueError("give a playlist_name, track_uris or tracks")
        if len(self.track_uris) + len(self.tracks) > MAX_TRACKS:
            raise ValueError(f"at most {MAX_TRACKS} tracks in track_uris and tracks together")
        return self

    def to_request(self) -> Request:
        return Request(playlist_name=self.playlist_name, track_uris=list(self.track_uris),
                       k=self.k, exclude_seen=self.exclude_seen,
                       tracks=[TrackMeta(**t.model_dump()) for t in self.tracks])


class V1Request(_Strict):
    instances: list[Instance] = Field(min_length=1, max_length=MAX_INSTANCES)


def _first_error(exc: ValidationError, prefix: str = "") -> InvalidRequestError:
    """The first problem, as ``instances.0.k: Input should be less than or equal to 500``."""
    error = exc.errors(include_url=False)[0]
    loc, message = [str(part) for part in error["loc"]], error["msg"]
    message = message.removeprefix("Value error, ")
    field, sep, rest = message.partition(": ")
    if sep and field.isidentifier():  # raised by _bounded_lists on behalf of a field
        loc, message = [*loc, field], rest
    return InvalidRequestError(message, field=".".join([prefix, *loc] if prefix else loc)
                               or "body")


def parse_v1(payload: Any) -> list[Instance]:
    """The instances of a V1 ``:predict`` body (a dict, or JSON bytes), validated."""
    if isinstance(payload, bytes | str):
        try:
            payload = json.loads(payload)
        except ValueError as exc:
            raise InvalidRequestError(f"the body is not JSON ({exc})", field="body") from None
    if not isinstance(payload, dict):
        raise InvalidRequestError("the body must be a JSON object with 'instances'",
                                  field="body")
    try:
        return V1Request.model_validate(payload).instances
    except ValidationError as exc:
        raise _first_error(exc) from None


def parse_instance(fields: dict[str, Any], prefix: str) -> Instance:
    """One instance from already-decoded fields (the V2 inputs); errors name
    ``prefix.field``."""
    try:
        return Instance.model_validate(fields)
    except ValidationError as exc:
        raise _first_error(exc, prefix) from None
