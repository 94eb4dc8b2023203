"""Aliases on the registered model, moved in one direction only.

``candidate`` is set when a bundle is registered. ``staging`` and ``canary`` move when
deploy renders or applies an InferenceService, ``production`` when a canary is promoted.
A version may take an alias only when it holds the one before it, so nothing reaches
production without passing through each step.

A move is compare-and-set: with ``expected`` it happens only if the alias still points
where the caller last saw it, so of two processes moving one alias from the same state,
one wins and the other gets a :class:`RegistryError`. Check and set run under one lock
(:func:`llarapp.locks.exclusive` beside a SQLite or file registry, waiting up to
``LOCK_WAIT_S``); MLflow's API has no atomic alias update, so against a remote tracking
server the two steps are only as close together as two requests.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from llarapp.errors import ConfigError, RegistryError

ALIASES = ("candidate", "staging", "canary", "production")
ANY = object()  # ``expected`` left out: move from wherever the alias is
LOCK_WAIT_S = 30.0


@dataclass(frozen=True)
class AliasMove:
    alias: str
    version: str
    previous: str | None  # the version that held the alias before; None if none did

    @property
    def moved(self) -> bool:
        return self.previous != self.version


class Registry:
    """A registered model in MLflow, addressed by name."""

    def __init__(self, model_name: str, tracking_uri: str | None = None):
        from mlflow import MlflowClient

        from llarapp.tracking import default_tracking_uri

        self.name = model_name
        self.tracking_uri = tracking_uri or default_tracking_uri()
        self.client = MlflowClient(tracking_uri=self.tracking_uri)

    def ensure_model(self, description: str = "") -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(self.name)
        except MlflowException:
            self.client.create_registered_model(self.name, description=description)

    def aliases(self) -> dict[str, str]:
        """{alias: version} for the aliases this package manages; {} for an unknown model."""
        from mlflow.exceptions import MlflowException

        try:
            held = self.client.get_registered_model(self.name).aliases
        except MlflowException:
            return {}
        return {alias: str(held[alias]) for alias in ALIASES if alias in held}

    def version(self, ref: str) -> Any:
        """A model version by number (``"3"``) or by alias (``"@staging"``)."""
        from mlflow.exceptions import MlflowException

        try:
            if ref.startswith("@"):
                return self.client.get_model_version_by_alias(self.name, ref[1:])
            return self.client.get_model_version(self.name, ref)
        except MlflowException as exc:
            raise RegistryError(
                f"model {self.name!r} has no version {ref!r} in the registry at "
                f"{self.tracking_uri}. List them with: llarapp registry list") from exc

    def check_move(self, alias: str, version: str) -> AliasMove:
        """What :meth:`move` would do; raises when the move is not allowed. The version
        must hold the alias before ``alias`` in :data:`ALIASES` (or ``alias`` itself,
        which makes the move a no-op)."""
        if alias not in ALIASES:
            raise ConfigError(f"alias {alias!r} is not one of {', '.join(ALIASES)}")
        version = str(self.version(str(version)).version)
        held = self.aliases()
        step = ALIASES.index(alias)
        if (step and held.get(alias) != version
                and held.get(ALIASES[step - 1]) != version):
            raise RegistryError(
                f"version {version} of {self.name!r} cannot become {alias!r}: it does not hold "
                f"{ALIASES[step - 1]!r} (aliases now: {held or 'none'}). Move it through "
                f"{' → '.join(ALIASES[:step + 1])} in order")
        return AliasMove(alias, version, held.get(alias))

    def move(self, alias: str, version: str, expected: Any = ANY) -> AliasMove:
        """Point ``alias`` at ``version`` (see :meth:`check_move`); keep an audit trail.
        ``expected``: the version (or None: no version) the alias must still hold."""
        with self._lock():
            move = self.check_move(alias, version)
            if expected is not ANY and move.previous != (None if expected is None
                                                         else str(expected)):
                raise RegistryError(
                    f"alias {alias!r} of {self.name!r} moved meanwhile: it points at "
                    f"{move.previous}, not {expected} as expected; read the aliases again "
                    "(llarapp registry list) and retry")
            if not move.moved:
                return move
            self.client.set_registered_model_alias(self.name, alias, move.version)
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        self.client.set_model_version_tag(self.name, move.version, f"alias.{alias}.since", now)
        if move.previous is not None:
            self.client.set_registered_model_tag(self.name, f"previous.{alias}", move.previous)
        return move

    def _lock(self):
        """One alias writer at a time where the registry is a local file."""
        import contextlib

        from llarapp.locks import exclusive

        for scheme in ("sqlite:///", "file://"):
            if self.tracking_uri.startswith(scheme):
                path = self.tracking_uri.removeprefix(scheme) or "."
                return exclusive(path + ".aliases", "moved", wait_s=LOCK_WAIT_S)
        return contextlib.nullcontext()

    def table(self) -> list[dict[str, Any]]:
        """Every version, newest first, with its aliases and the tags register wrote."""
        versions = self.client.search_model_versions(f"name='{self.name}'")
        by_version: dict[str, list[str]] = {}
        for alias, version in self.aliases().items():  # search results carry no aliases
            by_version.setdefault(version, []).append(alias)
        rows = [{"version": str(v.version),
                 "aliases": ",".join(sorted(by_version.get(str(v.version), []))),
                 "model_version": v.tags.get("model_version", ""),
                 "gate": v.tags.get("gate_value", ""),
                 "int8_parity": v.tags.get("int8_parity", ""),
                 "storage_uri": v.tags.get("storage_uri", "")} for v in versions]
        return sorted(rows, key=lambda row: -int(row["version"]))
