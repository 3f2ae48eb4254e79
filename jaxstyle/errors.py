"""Error types and exit codes shared by the library and the CLI.

Every error the user can cause is one of these. The CLI prints ``str(error)`` as a single line on stderr and
exits with ``error.exit_code``; it never shows a traceback for them.
"""

from __future__ import annotations

import lzma
import struct
import tokenize
import zipfile
import zlib

# Exit statuses, one home. argparse already exits 2 on bad command lines, so usage errors share it.
EXIT_OK = 0
EXIT_USAGE = 2  # the command line or an option value is wrong
EXIT_DATA = 3  # an input file (image, weights, checkpoint) is missing, unreadable or invalid
EXIT_NONFINITE = 4  # the optimisation produced a non-finite loss; the last finite image was kept
EXIT_PEER = 5  # several processes: another process of the job stopped or stopped answering
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT), after writing the last good image

# What zipfile/numpy raise on damaged .npz archives besides ValueError (found by tests/test_fuzz.py): unsupported
# zip versions, compression methods or encryption flags, broken npy header text, corrupt compressed streams,
# shapes too large to allocate. Readers of weights and checkpoints turn each into one InputError line.
DAMAGED_ARCHIVE = (OSError, EOFError, zipfile.BadZipFile, zlib.error, lzma.LZMAError, NotImplementedError,
                   RuntimeError, tokenize.TokenError, SyntaxError, TypeError, RecursionError, struct.error,
                   OverflowError, MemoryError)


class JaxstyleError(Exception):
    """Base class: a one-line, user-facing message and an exit status."""

    exit_code = EXIT_DATA

    def __init__(self, message: str):
        # One line, always: newlines in messages would break the CLI contract.
        super().__init__(" ".join(str(message).split()))


class UsageError(JaxstyleError, ValueError):
    """An option value is invalid (negative weight, unknown layer, wrong count, bad output path...)."""

    exit_code = EXIT_USAGE


class ConfigError(UsageError):
    """A configuration field has an invalid value. The message names the field as the library knows it
    (``style_weight must be a finite number >= 0, not -1``); a front end shows it under its own name for the field
    (the CLI: ``--style-weight ...``) with :meth:`renamed`."""

    def __init__(self, field: str, problem: str, context: str = ""):
        # ``problem`` continues the sentence after the field's name: " must be ...", ": unknown layer ...".
        self.field, self.problem, self.context = field, problem, context
        super().__init__(f"{context}{field}{problem}")

    def renamed(self, name) -> str:
        """The message with ``name(field)`` in place of the field's name."""
        return f"{self.context}{name(self.field)}{self.problem}"

    def within(self, context: str) -> "ConfigError":
        """The same error, said about a part of something larger (``"sweep run 1: "``)."""
        return ConfigError(self.field, self.problem, context + self.context)


class InputError(JaxstyleError):
    """An input file cannot be used. Message format: ``<file>: <what is wrong> — <what to do>``."""

    exit_code = EXIT_DATA

    def __init__(self, path, problem: str, fix: str | None = None):
        self.path = str(path)
        self.problem = problem
        self.fix = fix
        msg = f"{self.path}: {problem}"
        if fix:
            msg += f" — {fix}"
        super().__init__(msg)


class WeightsError(InputError):
    """A weights file (source or converted) is missing, unreadable, or does not match the expected layout."""


class ImageError(InputError):
    """An image file is missing, unreadable, or unsuitable."""


class NonFiniteLossError(JaxstyleError):
    """The loss became NaN or infinite; carries the iteration and the offending term."""

    exit_code = EXIT_NONFINITE
