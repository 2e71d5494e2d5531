"""Link-prediction scoring heads, one file each, registered by name in `HEADS`."""

from . import complex, distmult, rotate, text, transe  # noqa: F401  (registration)
from .base import HEADS, Head, register

__all__ = ["HEADS", "Head", "register"]
