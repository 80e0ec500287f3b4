"""The exceptions dsi_online raises for input a user can fix."""

import re

_OPTION = re.compile(r" \(--[a-z][a-z-]*(?:/-[A-Za-z])?\)")
"""A command-line option named after a parameter in a message: ` (--lookahead/-k)`."""


class DSIOnlineError(Exception):
    """Base class of every error dsi_online raises on purpose."""

    @property
    def cli_message(self) -> str:
        """The message as the command line prints it."""
        return str(self)


class InvalidParameterError(DSIOnlineError, ValueError):
    """A parameter is outside its allowed range; the message names it and the range.

    A message may name, after a parameter, the command-line option that sets it
    (`lookahead (--lookahead/-k) must be ...`): a Python caller reads the message without
    it (`lookahead must be ...`), the command line prints `cli_message`, with it."""

    def __init__(self, message: str) -> None:
        super().__init__(_OPTION.sub("", message))
        self._cli_message = message

    @property
    def cli_message(self) -> str:
        """The message with the options named, as the command line prints it."""
        return self._cli_message


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
