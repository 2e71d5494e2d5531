"""Relational GNN encoders, one file each, registered by name in `ENCODERS`."""

from . import film, rgcn  # noqa: F401  (registration)
from .base import ENCODERS, RelationalEncoder, register

__all__ = ["ENCODERS", "RelationalEncoder", "register"]
