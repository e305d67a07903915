"""The `fmnist` command: thin sub-commands over the library (heavy imports happen inside each one)."""

from __future__ import annotations

import sys

from fmnist.cli.errors import CLIError
from fmnist.cli.parser import build_parser

__all__ = ["CLIError", "build_parser", "main"]


def main(argv=None) -> int:
    from fmnist.artifact import ArtifactError
    from fmnist.cluster import ClusterError
    from fmnist.data import DatasetError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:  # `fmnist archs | head`: the reader left, nothing is wrong
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (CLIError, ArtifactError, ClusterError, DatasetError, KeyError, ValueError, OSError, RuntimeError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"fmnist {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"fmnist {args.command}: interrupted", file=sys.stderr)
        return 130
