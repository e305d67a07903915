"""The `fmnist` command: thin sub-commands over the library (heavy imports happen inside each one)."""

from __future__ import annotations

import sys

from fmnist.cli.errors import CLIError
from fmnist.cli.parser import build_parser

__all__ = ["CLIError", "build_parser", "main"]


# optional dependencies -> (the extra that brings them, the make target that installs it)
EXTRAS = {"torch": ("train", "make setup-train"), "safetensors": ("train", "make setup-train"),
          "onnx": ("train", "make setup-train"), "matplotlib": ("train", "make setup-train"),
          "tqdm": ("train", "make setup-train"), "keras": ("keras", "make setup-train"),
          "h5py": ("keras", "make setup-train"), "pyarrow": ("batch", "make setup-train"),
          "dask": ("batch", "make setup-train"), "distributed": ("batch", "make setup-train"),
          "psycopg": ("postgres", "make setup-train"), "psycopg_pool": ("postgres", "make setup-train")}


def _show_progress() -> None:
    """What the library says of its long steps (logger fmnist.progress: drawing pictures, caches), on stderr."""
    import logging

    log = logging.getLogger("fmnist.progress")
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("fmnist: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False


def main(argv=None) -> int:
    """Run one command. A user's mistake (an FmnistError, a file that is not there or not readable, a
    server that does not answer) is one line on stderr and exit status 2; anything else is a bug and
    is shown with its traceback."""
    from fmnist.errors import FmnistError, ServerUnreachable

    args = build_parser().parse_args(argv)
    _show_progress()
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
    except ModuleNotFoundError as e:
        top = (e.name or "").partition(".")[0]
        if top not in EXTRAS:
            raise  # not an optional dependency: a bug, with its traceback
        extra, make = EXTRAS[top]
        print(f"fmnist {args.command}: error: this command needs {top}, which the serve set-up does not install; "
              f"run `{make}` (or pip install 'fmnist[{extra}]')", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"fmnist {args.command}: interrupted", file=sys.stderr)
        return 130
