"""The Python API behind the command line: `medkg.api.kg` for `medkg kg ...`, `medkg.api.extract` for
`medkg extract ...`, `medkg.api.embed` for `medkg embed ...` (import it by name: it loads torch)."""

from . import extract, kg

__all__ = ["extract", "kg"]
