"""The one kind of error the commands raise for a user's mistake."""

from fmnist.errors import FmnistError


class CLIError(FmnistError):
    """A user error: printed as one line, exit status 2."""
