"""The errors fmnist raises for what a user can fix, as opposed to bugs.

Every user-facing error is an `FmnistError`: the CLI prints its message as one line (exit status 2); any
other exception is a bug and is shown with its traceback. `InvalidValue` is also a ValueError and
`UnknownName` also a KeyError, so code that catches the built-in kinds keeps working.
"""


class FmnistError(Exception):
    """Something the user can fix: the message says what was wrong and what is expected."""


class InvalidValue(FmnistError, ValueError):
    """A setting, option or argument with a value that cannot be used."""


class UnknownName(FmnistError, KeyError):
    """A name (model architecture, class, ...) that is not known."""

    def __str__(self) -> str:  # KeyError quotes its message; this one reads as a sentence
        return str(self.args[0]) if self.args else ""


class ServerUnreachable(OSError):
    """No fmnist server answered at the address a client command was given."""


class Refused(FmnistError):
    """A request refused, whoever refuses it (the HTTP reader, the app, the pipeline, a key check): an HTTP
    status, a stable machine-readable code, a message saying what was wrong and what is expected, and any
    headers the answer needs (Retry-After). The one refusal type: every door turns it into its own shape."""

    def __init__(self, status: int, code: str, message: str, headers: "dict | None" = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}
