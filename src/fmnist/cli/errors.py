"""The one kind of error the commands raise for a user's mistake."""


class CLIError(Exception):
    """A user error: printed as one line, exit status 2."""
