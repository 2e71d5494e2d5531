"""The Python API behind the command line: `medkg.api.kg` for `medkg kg ...`, `medkg.api.extract` for `medkg extract ...`."""

from . import extract, kg

__all__ = ["extract", "kg"]
