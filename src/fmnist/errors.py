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
