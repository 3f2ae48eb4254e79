"""The ``jaxstyle`` command: one subcommand per module in this package.

Each subcommand module defines ``register(subparsers) -> argparse.ArgumentParser`` and sets ``execute=`` on the
parser (``parser.set_defaults(execute=func)``); ``func(args) -> int`` carries the command out and returns the exit
status ("run" is kept for what it means everywhere else: one stylization). Errors derived from
:class:`~jaxstyle.errors.JaxstyleError` become one line on stderr and their exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback
import warnings

from ..errors import EXIT_INTERRUPTED, EXIT_PEER, ConfigError, JaxstyleError
from . import distributed
from .options import flag

# name -> module in jaxstyle.cli; order is the order in --help.
SUBCOMMANDS = ("stylize", "sweep", "convert", "download", "features", "train", "apply", "export", "serve")


class OneLineArgumentParser(argparse.ArgumentParser):
    """argparse with the project's error contract: one ``error: ...`` line and exit status 2."""

    def error(self, message):
        self.exit(2, f"error: {' '.join(message.split())} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineArgumentParser(
        prog="jaxstyle",
        description="Neural style transfer the JAX way (Gatys et al. 2016; Johnson et al. 2016).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                parser_class=OneLineArgumentParser)
    for name in SUBCOMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None):
    # Warnings are for people at a terminal: one plain line, no source location.
    print(f"warning: {message}", file=sys.stderr)


def run_subcommand(name: str, argv=None) -> int:
    """Entry point for ``scripts/<name>.py``: ``jaxstyle <name> ...``."""
    return main([name, *(sys.argv[1:] if argv is None else argv)])


def main(argv=None) -> int:
    warnings.showwarning = _show_warning
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    several = False
    try:
        several = distributed.requested(args)
        if several and not distributed.in_worker():
            return distributed.supervise(argv, args)  # the work runs in a supervised child (see distributed)
        if several:
            distributed.initialize(args)
        return int(args.execute(args) or 0)  # a status every process agreed on: the normal shutdown follows
    except ConfigError as e:  # the library names the field (style_weight); the command line knows --style-weight
        print(f"error: {e.renamed(flag)}", file=sys.stderr)
        code = e.exit_code
    except JaxstyleError as e:
        print(f"error: {e}", file=sys.stderr)
        code = e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = EXIT_INTERRUPTED
    except Exception as e:  # in a worker: a peer gone, or a bug; either way it must leave at once (see below)
        if not several:
            raise
        if distributed.is_peer_failure(e):
            print(distributed.peer_failure(args, " ".join(str(e).split())[:160]), file=sys.stderr)
            code = EXIT_PEER
        else:
            traceback.print_exc()
            code = 1
    if several and distributed.in_worker():
        distributed.leave(code)  # this process alone failed: the others must not wait for it at the shutdown
    return code


if __name__ == "__main__":
    sys.exit(main())
