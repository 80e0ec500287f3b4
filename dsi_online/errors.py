"""The exceptions dsi_online raises for input a user can fix."""


class DSIOnlineError(Exception):
    """Base class of every error dsi_online raises on purpose."""


class InvalidParameterError(DSIOnlineError, ValueError):
    """A parameter is outside its allowed range; the message names it and the range."""


class ProfileError(DSIOnlineError):
    """A profile file is missing or malformed; the message names the file and the field."""


class MissingExtraError(DSIOnlineError, ImportError):
    """An optional dependency is needed for this feature; the message names the extra."""


def require(condition: bool, message: str) -> None:
    """Raise InvalidParameterError(message) unless condition holds."""
    if not condition:
        raise InvalidParameterError(message)


class BackendError(DSIOnlineError):
    """A backend (a Ray cluster) cannot be reached or failed during a run; work already
    journaled is kept."""
