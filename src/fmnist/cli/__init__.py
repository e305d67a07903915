"""The `fmnist` command: thin sub-commands over the library (heavy imports happen inside each one)."""

from __future__ import annotations

import sys

from fmnist.cli.errors import CLIError
from fmnist.cli.parser import build_parser

__all__ = ["CLIError", "build_parser", "main"]


def main(argv=None) -> int:
    """Run one command. A user's mistake (an FmnistError, a file that is not there or not readable, a
    server that does not answer) is one line on stderr and exit status 2; anything else is a bug and
    is shown with its traceback."""
    from fmnist.client import ServerUnreachable
    from fmnist.errors import FmnistError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:  # `fmnist archs | head`: the reader left, nothing is wrong
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (FmnistError, ServerUnreachable, FileNotFoundError, IsADirectoryError, NotADirectoryError,
            PermissionError) as e:
        print(f"fmnist {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"fmnist {args.command}: interrupted", file=sys.stderr)
        return 130
