"""Where models run: a named device, else CUDA when there is one, else the CPU. One rule for every model,
kept apart from the encoders so that importing it loads nothing but torch."""

from __future__ import annotations

import torch


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """`device`, else cuda when available, else cpu."""
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
