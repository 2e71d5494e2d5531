"""medkg's own errors: what a user can fix (an option, a file, a graph to load again).

The command line prints a `MedkgError` as one line and lets every other exception keep its
traceback, because anything else is a bug. The classes live in `kg`, the package every other
one (graphdb, extract, embed, encoders, alignment, medkg) already imports and which imports none
of them, so dependencies stay one-way. Each also derives from the built-in exception it used to
be, so `except ValueError` in callers keeps working.
"""

from __future__ import annotations


class MedkgError(Exception):
    """A user error: the message says what is wrong and what to do; no traceback is shown."""


class InputError(MedkgError, ValueError):
    """A value the user gave (an option, a parameter, a setting) that medkg cannot use."""


class MissingInputError(MedkgError, FileNotFoundError):
    """A file or directory the user named (or the default one) is not there."""


class ExistingOutputError(MedkgError, FileExistsError):
    """An output path holds something medkg will not overwrite."""


class DamagedFileError(MedkgError, ValueError):
    """A file medkg wrote earlier (a checkpoint, a model, a cache) cannot be read back."""
