"""Training-step benchmark: what the knowledge-guided objective costs over plain CLIP, and what BiomedCLIP's
speed levers (patch dropout, gradient caching, the sharded contrastive loss) save.

Why: medkg's objective adds knowledge soft targets, the entity decoder on both sides and anchored
prototypes to CLIP's InfoNCE. The goal is a training step at most 1.3x CLIP's on the same batch and
encoder. On the real shared data (`alignment.dataset.prepare_data`, cached under $MEDKG_HOME/alignment; the
first call builds the caches, about 30 s), one fixed batch (the first `--batch-size` training images and
reports, augmented once) and the frozen MiniLM's cached report features, this bench times full training
steps (forward, backward, gradient clipping, AdamW) and prints the median of `--repeats` steps of each
variant (and the minimum, the figure least touched by other load), the variants of a comparison
interleaved (ABBA order, after one untimed warm-up step each) so that other load hits them alike; the
ratio is that of the medians:

- **objective**: configs/clip.yaml's loss (InfoNCE, hard targets) against configs/medkg.yaml's (knowledge
  targets, entity decoder on images and reports, anchored prototypes), both on the configs' ResNet as
  shipped (widths 32-256, one block per stage, at the configs' image size), each model from the same seed;
- **patch dropout** 0.5 against none (`train.patch_dropout`, `ImageEncoder.forward(keep=...)`), medkg's
  objective, on a small ViT (224 px, patch 16, width 192, 4 layers, 3 heads: the transformer runs on 99 of
  197 tokens; the same images and reports, decoded at 224 px) and, for information, on the ResNet
  (regions dropped after the encoder: only the local terms get cheaper); the same model takes both variants;
- **gradient caching** (`train.grad_cache_chunk=8`, `alignment.grad_cache`) against none at the batch size,
  medkg's objective on the ResNet: the step time ratio (same model, interleaved) and the memory ratio.
  Memory is measured in two fresh processes, one per setting, each building the same model from a saved
  copy of the batch and running 3 steps: the peak resident set during the steps (Linux VmHWM, reset to
  the current RSS after set-up through /proc/self/clear_refs) minus the resident set just before the first
  step, i.e. what the steps add on top of the model, data and optimiser at their peak: activations kept
  for backward, gradients, AdamW's state (created by the first step), allocator slack. (On the CPU torch
  has no allocator counters; the process's peak RSS is the honest figure. The ResNet's BatchNorm
  normalises each chunk with the chunk's statistics, so its chunked step is close to, not equal to, the
  plain step.)
- **local loss under DDP**: two gloo processes on this machine (loopback, a free port; `--threads`
  split between them), each with half of the global batch, medkg's objective on the ResNet wrapped in
  DistributedDataParallel, `loss.local_loss=false` (every process computes the whole B x B logits)
  against `true` (its B/2 rows against the B columns); the step time is the slower process's, between
  barriers. The processes are killed if they outlive the run's deadline.
- `--breakdown`: where medkg's extra cost goes. CLIP, medkg, and medkg with one of its additions taken
  away each (the entity decoder on reports, on images, the prototypes, the knowledge targets for hard
  ones, the decoder's dropout), interleaved, each against CLIP.

Run from the repository root:

    .venv/bin/python bench/train_step.py [--repeats 5] [--batch-size 32] [--threads 2] [--data-dir ../shared/data]
                                         [--json OUT] [--skip-ddp] [--breakdown]

About 4 minutes on 2 cores at the defaults. Timings move with other load: the run prints the load
average, and only ratios within one run compare. The bench sets OMP_WAIT_POLICY=PASSIVE unless the
environment sets it: with other jobs on the cores, OpenMP's default spin-waiting threads (2 here) wait
for a descheduled partner and one step takes 2-6x its time at random, which no interleaving averages
out; passive waiting measures the work. The run exits 0 unless it fails; a missed goal is only reported.
"""

from __future__ import annotations

import sys
from pathlib import Path

import _root  # noqa: E402,F401  (first: the repository root on sys.path)

import os  # noqa: E402

# Before torch starts its OpenMP threads (see the module docstring); an explicit setting is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass, replace  # noqa: E402
from types import SimpleNamespace  # noqa: E402
from typing import Any  # noqa: E402

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402
from torch import Tensor  # noqa: E402
from torch.nn.parallel import DistributedDataParallel  # noqa: E402

from alignment.batches import Batch  # noqa: E402
from alignment.config import AlignConfig, load_config  # noqa: E402
from alignment.dataset import prepare_data  # noqa: E402
from alignment.grad_cache import grad_cache_step, split_rows  # noqa: E402
from alignment.objective import Inputs, Objective  # noqa: E402
from alignment.train import build_model, parameter_groups, prototype_anchors  # noqa: E402
from encoders.transforms import ImageTransform  # noqa: E402
from graphdb.uri import medkg_home  # noqa: E402
from kg.paths import default_data_dir  # noqa: E402
from kg.problems import ProblemLog  # noqa: E402

CONFIGS = _root.ROOT / "configs"
VIT = ["model.image.architecture=vit", "model.image.patch_size=16", "model.image.vit_hidden_size=192",
       "model.image.vit_layers=4", "model.image.vit_heads=3", "model.image.image_size=224", "transform.image_size=224"]
PATCH_KEEP = 0.5
CHUNK = 8
MEMORY_STEPS = 3
DDP_WORLD, DDP_TIMEOUT_S = 2, 600
GOAL = 1.3


@dataclass
class Shared:
    """What a model and its objective need of the prepared data (`build_model`, `prototype_anchors`,
    `Objective`): small enough to hand to other processes."""
    names: list[str]
    entity_queries: Tensor
    entity_similarity: Tensor

    @property
    def vocabulary(self) -> SimpleNamespace:
        return SimpleNamespace(names=self.names)


class Step:
    """One model, its objective and AdamW; a call is one timed training step on `inputs`."""

    def __init__(self, config: AlignConfig, shared: Shared, seed: int = 0, distributed: bool = False) -> None:
        torch.manual_seed(seed)
        model = build_model(config, shared)  # type: ignore[arg-type]  # Shared has what build_model reads
        anchors = prototype_anchors(model, shared)  # type: ignore[arg-type]
        self.objective = Objective(model, config.loss, shared.entity_similarity, anchors).train()
        self.trained = DistributedDataParallel(self.objective) if distributed else self.objective
        t = config.train
        self.optimizer = torch.optim.AdamW(parameter_groups(self.objective, t.lr, t.text_lr, t.weight_decay))
        self.max_grad_norm = t.max_grad_norm

    def __call__(self, inputs: Inputs, chunk: int = 0) -> float:
        """Seconds of one step: forward and backward (plain or gradient-cached), clipping, AdamW."""
        start = time.perf_counter()
        if chunk:
            grad_cache_step(self.objective, inputs, chunk)
        else:
            self.trained(inputs)["loss"].backward()
        torch.nn.utils.clip_grad_norm_([p for g in self.optimizer.param_groups for p in g["params"]], self.max_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - start


def interleaved(variants: dict[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    """The seconds of each variant in `repeats` rounds, each round running every variant once, in ABBA
    order (odd rounds reversed), after one untimed warm-up call each."""
    for run in variants.values():
        run()
    times: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for round_ in range(repeats):
        for name in names if round_ % 2 == 0 else reversed(names):
            times[name].append(variants[name]())
    return times


def configs(batch_size: int) -> dict[str, AlignConfig]:
    common = [f"train.batch_size={batch_size}"]
    return {"clip": load_config(CONFIGS / "clip.yaml", common), "medkg": load_config(CONFIGS / "medkg.yaml", common),
            "medkg_vit": load_config(CONFIGS / "medkg.yaml", common + VIT)}


BREAKDOWN = {"without entity_text": ["loss.entity_text=0"], "without entity_image": ["loss.entity_image=0"],
             "without prototypes": ["loss.prototype=0"], "hard targets": ["loss.targets=hard", "data.pairing=pseudo"],
             "decoder dropout 0": ["model.decoder.dropout=0"]}


def fixed_batch(config: AlignConfig, data_dir: Path, cache_dir: Path, batch_size: int) -> tuple[Shared, Inputs, str]:
    """The first `batch_size` training images and reports of the prepared data, augmented once (seed 0),
    with the frozen text encoder's cached features."""
    start = time.perf_counter()
    data = prepare_data(config, data_dir, cache_dir, ProblemLog(), progress=False)
    shared = Shared(list(data.vocabulary.names), data.entity_queries, data.entity_similarity)
    torch.manual_seed(0)
    text_encoder = build_model(config, data).text_encoder
    data.cache_text(text_encoder, cache_dir / "text", progress=False)
    rows = torch.arange(batch_size)
    torch.manual_seed(0)
    inputs = data.inputs(Batch(rows, rows), ImageTransform(config.transform), torch.device("cpu"))
    summary = (f"{len(data.train_images)} training images, {len(data.train_reports)} training reports, "
               f"{len(shared.names)} entities; data ready in {time.perf_counter() - start:.1f} s")
    return shared, inputs, summary


def memory_probe(state_file: Path, chunk: int, threads: int) -> dict[str, float]:
    """The peak RSS that `MEMORY_STEPS` steps add (see the module docstring), in a fresh process."""
    result = subprocess.run([sys.executable, __file__, "--probe", str(state_file), "--probe-chunk", str(chunk),
                             "--threads", str(threads)], capture_output=True, text=True, check=False)
    if result.returncode:
        raise RuntimeError(f"memory probe (chunk {chunk}) failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def probe(state_file: Path, chunk: int) -> None:
    state = torch.load(state_file, weights_only=False)
    step = Step(state["config"], state["shared"])
    inputs = state["inputs"]
    reset = _reset_peak()  # the set-up's own peak (loading, building) must not stand for the steps'
    before = _status_mb("VmRSS")
    for _ in range(MEMORY_STEPS):
        step(inputs, chunk)
    peak = _status_mb("VmHWM")
    print(json.dumps({"rss_before_mb": round(before, 1), "peak_rss_mb": round(peak, 1), "added_mb": round(peak - before, 1),
                      "peak_reset": reset}))


def _status_mb(field: str) -> float:
    """A /proc/self/status memory line in MiB: VmRSS now, VmHWM the peak (this process's own since exec;
    getrusage's max RSS would also carry the parent's peak across fork and exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0: write 5 to /proc/self/clear_refs)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def ddp_worker(rank: int, port: int, config: AlignConfig, shared: Shared, inputs: Inputs, repeats: int, threads: int,
               out: str) -> None:
    torch.set_num_threads(threads)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=DDP_WORLD, timeout=datetime.timedelta(seconds=DDP_TIMEOUT_S))
    try:
        rows = len(inputs.texts)
        share = rows // DDP_WORLD
        mine = split_rows(inputs, slice(rank * share, (rank + 1) * share), rows)
        steps = {f"local_loss={flag}": Step(replace(config, loss=replace(config.loss, local_loss=flag)), shared,
                                            distributed=True) for flag in (False, True)}

        def timed(step: Step) -> Callable[[], float]:
            def run() -> float:
                dist.barrier()
                seconds = torch.tensor(step(mine))
                dist.all_reduce(seconds, op=dist.ReduceOp.MAX)  # the slower process sets the pace
                return float(seconds)
            return run

        times = interleaved({name: timed(step) for name, step in steps.items()}, repeats)
        if rank == 0:
            Path(out).write_text(json.dumps(times))
    finally:
        dist.destroy_process_group()


def ddp_local_loss(config: AlignConfig, shared: Shared, inputs: Inputs, repeats: int, threads: int) -> dict[str, list[float]]:
    with tempfile.TemporaryDirectory(prefix="medkg-bench-ddp-") as tmp:
        out = str(Path(tmp) / "times.json")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        per_process = max(1, threads // DDP_WORLD)
        context = mp.start_processes(ddp_worker, args=(port, config, shared, inputs, repeats, per_process, out),
                                     nprocs=DDP_WORLD, join=False, start_method="spawn")
        deadline = time.monotonic() + DDP_TIMEOUT_S
        try:
            while not context.join(timeout=1):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the {DDP_WORLD} DDP processes did not finish within {DDP_TIMEOUT_S} s")
        finally:
            for process in context.processes:
                if process.is_alive():
                    process.kill()
                    process.join()
        return json.loads(Path(out).read_text())


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per variant (default 5)")
    parser.add_argument("--batch-size", type=int, default=32, help="the (global) batch (default 32)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2; split between DDP processes)")
    parser.add_argument("--data-dir", type=Path, default=None, help="default: $MEDKG_DATA_DIR, else ../shared/data")
    parser.add_argument("--json", type=Path, default=None, help="write every figure to this JSON file")
    parser.add_argument("--skip-ddp", action="store_true", help="leave out the two-process local-loss comparison")
    parser.add_argument("--breakdown", action="store_true", help="also time medkg with each of its additions taken away")
    parser.add_argument("--probe", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--probe-chunk", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.probe:
        probe(args.probe, args.probe_chunk)
        return 0
    logging.basicConfig(level=logging.WARNING)
    if args.batch_size % DDP_WORLD or args.batch_size % CHUNK:
        parser.error(f"--batch-size must be a multiple of {CHUNK} (the cache chunk) and of {DDP_WORLD}")
    started = time.perf_counter()
    print(f"train_step bench: batch {args.batch_size}, {args.repeats} repeats, {args.threads} threads "
          f"(OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}), load average {load()}")
    settings = configs(args.batch_size)
    data_dir = args.data_dir or default_data_dir()
    cache_dir = medkg_home() / "alignment"
    shared, inputs, summary = fixed_batch(settings["medkg"], data_dir, cache_dir, args.batch_size)
    print(f"{summary}; ResNet at {settings['medkg'].model.image.image_size} px, ViT at "
          f"{settings['medkg_vit'].model.image.image_size} px")
    _, vit_inputs, _ = fixed_batch(settings["medkg_vit"], data_dir, cache_dir, args.batch_size)
    figures: dict[str, Any] = {"batch_size": args.batch_size, "repeats": args.repeats, "threads": args.threads,
                               "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "load_before": os.getloadavg()}

    def report(name: str, base: str, variant: str, times: dict[str, list[float]], note: str = "") -> None:
        """Print and keep the medians (and minima) of two variants and the ratio of the medians."""
        medians = {k: statistics.median(v) for k, v in times.items()}
        ratio = medians[variant] / medians[base]
        figures[name] = {"median_s": medians, "min_s": {k: min(v) for k, v in times.items()}, "times_s": times,
                         "ratio": round(ratio, 3), "ratio_of_minima": round(min(times[variant]) / min(times[base]), 3)}
        print(f"{name:<22} {base} {medians[base]:.3f} s (min {min(times[base]):.3f}), {variant} {medians[variant]:.3f} s "
              f"(min {min(times[variant]):.3f}): "
              f"ratio {ratio:.2f}x{note}")

    print("\nmedian step seconds (forward + backward + clip + AdamW), interleaved:")
    clip, medkg = Step(settings["clip"], shared), Step(settings["medkg"], shared)
    times = interleaved({"clip": lambda: clip(inputs), "medkg": lambda: medkg(inputs)}, args.repeats)
    met = "met" if statistics.median(times["medkg"]) / statistics.median(times["clip"]) <= GOAL else "NOT met"
    report("objective (ResNet)", "clip", "medkg", times, f" (goal <= {GOAL}x: {met})")
    del clip

    vit = Step(settings["medkg_vit"], shared)
    vit_dropped = replace(vit_inputs, region_keep=PATCH_KEEP)
    times = interleaved({"keep=1": lambda: vit(vit_inputs), f"keep={PATCH_KEEP}": lambda: vit(vit_dropped)}, args.repeats)
    report("patch dropout (ViT)", "keep=1", f"keep={PATCH_KEEP}", times)
    del vit
    dropped = replace(inputs, region_keep=PATCH_KEEP)
    times = interleaved({"keep=1": lambda: medkg(inputs), f"keep={PATCH_KEEP}": lambda: medkg(dropped)}, args.repeats)
    report("patch dropout (ResNet)", "keep=1", f"keep={PATCH_KEEP}", times, " (regions dropped after the encoder)")

    times = interleaved({"plain": lambda: medkg(inputs), f"chunk={CHUNK}": lambda: medkg(inputs, CHUNK)}, args.repeats)
    report("grad cache (ResNet)", "plain", f"chunk={CHUNK}", times)
    del medkg
    with tempfile.TemporaryDirectory(prefix="medkg-bench-memory-") as tmp:
        state = Path(tmp) / "state.pt"
        torch.save({"config": settings["medkg"], "shared": shared, "inputs": inputs}, state)
        memory = {name: memory_probe(state, chunk, args.threads) for name, chunk in (("plain", 0), (f"chunk={CHUNK}", CHUNK))}
    plain, cached = memory["plain"], memory[f"chunk={CHUNK}"]
    ratio = cached["added_mb"] / plain["added_mb"]
    figures["grad cache memory"] = {**memory, "ratio": round(ratio, 3)}
    hidden = "" if plain["peak_reset"] and cached["peak_reset"] else " (peak not reset after set-up: may be a lower bound)"
    print(f"{'grad cache memory':<22} peak RSS added by {MEMORY_STEPS} steps: plain {plain['added_mb']:.0f} MB "
          f"(peak {plain['peak_rss_mb']:.0f} MB), chunk={CHUNK} {cached['added_mb']:.0f} MB "
          f"(peak {cached['peak_rss_mb']:.0f} MB): ratio {ratio:.2f}x{hidden}")

    if args.breakdown:
        common = [f"train.batch_size={args.batch_size}"]
        steps = {"clip": Step(settings["clip"], shared), "medkg": Step(settings["medkg"], shared)}
        steps.update({name: Step(load_config(CONFIGS / "medkg.yaml", common + extra), shared)
                      for name, extra in BREAKDOWN.items()})
        times = interleaved({name: (lambda step=step: step(inputs)) for name, step in steps.items()}, args.repeats)
        del steps
        base = statistics.median(times["clip"])
        figures["breakdown"] = {name: {"median_s": statistics.median(t), "min_s": min(t),
                                       "vs_clip": round(statistics.median(t) / base, 3)} for name, t in times.items()}
        print("\nbreakdown (ResNet), median step seconds, interleaved, against CLIP:")
        for name, t in times.items():
            print(f"  {name:<22} {statistics.median(t):.3f} s (min {min(t):.3f}): {statistics.median(t) / base:.2f}x")

    if not args.skip_ddp:
        times = ddp_local_loss(settings["medkg"], shared, inputs, args.repeats, args.threads)
        report("local loss (DDP x2)", "local_loss=False", "local_loss=True", times,
               f" ({DDP_WORLD} gloo processes, {max(1, args.threads // DDP_WORLD)} thread(s) each, "
               f"global batch {args.batch_size})")

    figures["load_after"] = os.getloadavg()
    figures["seconds"] = round(time.perf_counter() - started, 1)
    print(f"\n{figures['seconds']:.0f} s in all; load average {load()}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
