"""Typed errors. Each says what was wrong, where, and how to fix it.

The serving layer maps them to HTTP status codes, so the class names are part of the API.
"""

from __future__ import annotations


class LlaraError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(LlaraError, ValueError):
    """A configuration value or key is invalid."""


class DataValidationError(LlaraError, ValueError):
    """Input data does not follow the expected format."""

    def __init__(self, message: str, *, file: str | None = None, pid: object = None,
                 field: str | None = None, fix: str | None = None):
        where = ", ".join(
            f"{name}={value}" for name, value in (("file", file), ("pid", pid), ("field", field))
            if value is not None
        )
        text = message + (f" [{where}]" if where else "") + (f". Fix: {fix}" if fix else "")
        super().__init__(text)
        self.file, self.pid, self.field, self.fix = file, pid, field, fix
        self._message = message

    def __reduce__(self):  # keep the fields when raised in a worker process
        return (_rebuild_validation_error,
                (self._message, self.file, self.pid, self.field, self.fix))


def _rebuild_validation_error(message, file, pid, field, fix) -> DataValidationError:
    return DataValidationError(message, file=file, pid=pid, field=field, fix=fix)


class StorageError(LlaraError, OSError):
    """Reading or writing local or object storage failed."""


class StorageNotFoundError(StorageError, FileNotFoundError):
    """The object, file or bucket does not exist."""


class ArtifactError(LlaraError):
    """An artifact folder is missing, incomplete or of the wrong kind."""


class PipelineError(LlaraError):
    """A pipeline task failed; its own error is in the task's log."""


class ModelNotReadyError(LlaraError):
    """A model was used before it was trained or loaded."""


class BundleError(ArtifactError):
    """A serving bundle is missing a file, or a file does not match its recorded hash."""


class RegistryError(LlaraError):
    """A model version or alias is missing from the registry, or may not move that way."""


class DeployError(LlaraError):
    """An InferenceService could not be rendered or applied."""


class InvalidRequestError(LlaraError, ValueError):
    """A prediction request broke the API's schema or limits; the server answers 400.

    ``field`` is the dotted path of the offending field (``instances.0.k``)."""

    def __init__(self, message: str, field: str = ""):
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
