"""What every resumable training run directory shares: one atomic checkpoint file, a JSON-lines metrics
log cut back to the checkpoint on resumption, a check that the directory holds the same run, and torch's
RNG states (dropout), so that a resumed run continues exactly as if it had never stopped."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import torch

from kg.atomic import atomic_open
from kg.errors import DamagedFileError, InputError

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"


def save_checkpoint(path: Path, state: dict[str, Any], device: torch.device) -> None:
    """`state` plus torch's RNG states (CUDA's too on a GPU), written whole or not at all."""
    state = {**state, "torch_rng": torch.get_rng_state()}
    if device.type == "cuda":  # dropout on the GPU draws from CUDA's own generator
        state["cuda_rng"] = torch.cuda.get_rng_state(device)
    with atomic_open(path, "wb") as f:
        torch.save(state, f)


def read_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """The state `save_checkpoint` wrote; DamagedFileError (saying how to go on) when the file is cut short,
    empty or not a checkpoint: checkpoints are written atomically, so only a copy or a disk can do that."""
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise
    except (OSError, RuntimeError, EOFError, ValueError, KeyError, TypeError, AttributeError, ImportError,
            pickle.UnpicklingError) as error:
        reason = (str(error).splitlines() or [type(error).__name__])[0][:100]
        raise DamagedFileError(f"{path} is damaged ({reason}); "
                               f"delete it and run the same training command again to start the run from scratch, "
                               "or put back a good copy") from None
    if not isinstance(state, dict):
        raise DamagedFileError(f"{path} is not a medkg checkpoint; delete it and train again")
    return state


def load_checkpoint(path: Path, device: torch.device) -> dict[str, Any]:
    """The state `save_checkpoint` wrote, torch's RNG states restored."""
    state = read_checkpoint(path, device)
    torch.set_rng_state(state["torch_rng"].cpu())
    if "cuda_rng" in state and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda_rng"].cpu(), device)
    return state


def resume_state(run_dir: Path, device: torch.device, config: dict[str, Any], defaults: dict[str, Any],
                 resumable: set[str], digest_key: str, digest: str, progress_key: str) -> dict[str, Any] | None:
    """The last checkpoint's state, checked to be this run's (`check_same_run`), with the metrics log cut
    back to its `progress_key` (epoch or step); None for a fresh run, whose stale log is removed."""
    run_dir.mkdir(parents=True, exist_ok=True)
    if not (run_dir / CHECKPOINT).exists():
        (run_dir / METRICS).unlink(missing_ok=True)
        return None
    state = load_checkpoint(run_dir / CHECKPOINT, device)
    check_same_run(run_dir, state["config"], config, resumable, state[digest_key], digest, defaults)
    trim_metrics(run_dir / METRICS, progress_key, state[progress_key])
    return state


def check_same_run(run_dir: Path, saved: dict[str, Any], config: dict[str, Any], resumable: set[str],
                   saved_digest: str, digest: str, defaults: dict[str, Any] | None = None) -> None:
    """Refuse to resume another run: a config differing beyond `resumable` fields, or other data. A field
    the checkpoint predates counts as its default (`defaults`)."""
    saved = {**(defaults or {}), **saved}
    changed = sorted(k for k, v in config.items() if k not in resumable and saved.get(k) != v)
    if changed or saved_digest != digest:
        what = f"config differs in {', '.join(changed)}" if changed else "training data differ"
        raise InputError(f"{run_dir} holds another run ({what}); use a new run directory")


def append_metrics(run_dir: Path, record: dict[str, Any]) -> None:
    with open(run_dir / METRICS, "a") as log:
        log.write(json.dumps(record) + "\n")


def read_metrics(log: Path) -> list[dict[str, Any]]:
    """The records of a metrics log, without a last line cut short by a kill; [] when there is no log."""
    records = []
    for line in log.read_text().splitlines() if log.exists() else []:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def trim_metrics(log: Path, key: str, last: int) -> None:
    """Keep the records whose `key` is at most `last`: those after the checkpoint will be logged again."""
    with atomic_open(log) as f:
        f.writelines(json.dumps(record) + "\n" for record in read_metrics(log) if record.get(key, last + 1) <= last)
