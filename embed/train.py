"""Training for link prediction: shuffled mini-batches, sampled negatives (or 1-N scoring), Adam, a
JSON-lines metrics log, and an atomic checkpoint after every epoch, so a run killed at any point resumes
from its last complete epoch and continues exactly as if it had never stopped.

A run directory holds `config.json`, `metrics.jsonl` (one object per epoch: epoch, loss, seconds, and
`valid` metrics every `eval_every` epochs) and `checkpoint.pt` (model, optimizer, epoch, the sampling
generator's and torch's RNG states, config, and a digest of the training triples).
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm import tqdm

from kg.atomic import atomic_open
from kg.errors import DamagedFileError

from .evaluate import evaluate
from .losses import LOSSES, train_keys
from .models import KGEConfig, LinkPredictor, build_model
from .run_data import SPLIT
from .runs import CHECKPOINT, append_metrics, read_checkpoint, resume_state, save_checkpoint
from .triples import Split, Triples

CONFIG = "config.json"
# Fields that may change between a run and its resumption: they do not change what is trained.
RESUMABLE_CHANGES = {"epochs", "eval_every", "eval_batch_size", "device"}


def train(config: KGEConfig, split: Split, run_dir: Path | str, progress: bool = True,
          features: Tensor | None = None) -> LinkPredictor:
    """Train to `config.epochs` epochs, resuming from `run_dir`'s checkpoint when there is one.
    `features` (one row per entity) are needed when `config.text_features` is set."""
    run_dir = Path(run_dir)
    device = config.resolved_device()
    model = build_model(config, split.train, features)
    optimizer = make_optimizer(model, config)
    generator = torch.Generator(device=device).manual_seed(config.seed)
    digest = triples_digest(split.train)
    done = _resume(run_dir, config, digest, model, optimizer, generator)
    with atomic_open(run_dir / CONFIG) as f:
        json.dump(config.to_dict(), f, indent=2)
    train_ids = split.train.stacked().to(device)
    bar = tqdm(range(done + 1, config.epochs + 1), initial=done, total=config.epochs, desc=config.model,
               unit="epoch", disable=not progress)
    try:
        for epoch in bar:
            _run_epoch(epoch, model, optimizer, train_ids, config, generator, split, run_dir, digest, bar, progress)
            done = epoch
    except KeyboardInterrupt:
        bar.close()
        raise KeyboardInterrupt(f"interrupted: {run_dir} keeps its checkpoint after epoch {done} of {config.epochs}; "
                                "run the same command again to resume") from None
    return model


def _run_epoch(epoch: int, model: LinkPredictor, optimizer: torch.optim.Optimizer, train_ids: Tensor, config: KGEConfig,
               generator: torch.Generator, split: Split, run_dir: Path, digest: str, bar: tqdm, progress: bool) -> None:
    """One epoch, its metrics record and its checkpoint (written atomically, so a kill leaves the last one whole)."""
    start = time.perf_counter()
    loss = _train_epoch(model, optimizer, train_ids, config, generator, progress)
    record: dict[str, Any] = {"epoch": epoch, "loss": loss, "seconds": round(time.perf_counter() - start, 4)}
    if config.eval_every and epoch % config.eval_every == 0 and len(split.valid):
        metrics = evaluate(model, split.valid, split.known, config.eval_batch_size)
        record["valid"] = {k: metrics[k] for k in ("mrr", "hits@1", "hits@3", "hits@10", "mean_rank")}
    bar.set_postfix(loss=f"{loss:.4f}", **({"valid_mrr": f"{record['valid']['mrr']:.3f}"} if "valid" in record else {}))
    append_metrics(run_dir, record)
    _save(run_dir, config, digest, model, optimizer, generator, epoch)


def make_optimizer(model: LinkPredictor, config: KGEConfig) -> torch.optim.Optimizer:
    """Adam; the fused kernel where there is one (a single pass over the parameters instead of seven: 5x
    faster on a large entity table), the lazy sparse variant for sparse gradients."""
    if config.sparse:
        return torch.optim.SparseAdam(list(model.parameters()), lr=config.lr)
    device = next(model.parameters()).device
    return torch.optim.Adam(model.parameters(), lr=config.lr, fused=device.type in ("cpu", "cuda"))


def load_model(run_dir: Path | str, train_triples: Triples, device: str = "", features: Tensor | None = None) -> LinkPredictor:
    """The model of `run_dir`'s last checkpoint, for the training triples (and text features) it was trained on."""
    state = read_checkpoint(Path(run_dir) / CHECKPOINT)
    if state.get("train_digest") != triples_digest(train_triples):
        raise DamagedFileError(f"{Path(run_dir) / CHECKPOINT} was trained on other triples than the run's own "
                               f"{SPLIT}: the run directory mixes two runs; train again into a new directory")
    config = KGEConfig.from_dict({**state["config"], **({"device": device} if device else {})})
    model = build_model(config, train_triples, features)
    model.load_state_dict(state["model"])
    return model.eval()


def triples_digest(triples: Triples) -> str:
    """Identifies a training set, so that a run never resumes on other data."""
    return hashlib.sha256(triples.stacked().cpu().numpy().tobytes()).hexdigest()[:16]


def batch_loss(model: LinkPredictor, config: KGEConfig, h: Tensor, r: Tensor, t: Tensor,
               generator: torch.Generator, state: dict[str, Any] | None = None) -> Tensor:
    """The loss of one batch of positives (`config.loss`, looked up in `LOSSES`), plus N3 on the
    positives' entities and relations when `config.regularization` is set. `state` carries what a loss
    keeps between the batches of an epoch."""
    loss, rows = LOSSES[config.loss](model, config, h, r, t, generator, {} if state is None else state)
    if config.regularization and rows is not None:
        loss = loss + config.regularization * (model.kge.n3(rows) + model.kge.n3(model.relation_rows(r))) / len(h)
    return loss


def _train_epoch(model: LinkPredictor, optimizer: torch.optim.Optimizer, train_ids: Tensor, config: KGEConfig,
                 generator: torch.Generator, progress: bool = False) -> float:
    model.train()
    state: dict[str, Any] = {}  # a fresh pre-batch every epoch, so a resumed epoch repeats exactly
    if config.loss == "infonce":
        state["train_keys"] = train_keys(*train_ids.unbind(1), model.num_entities, model.num_relations)
    total = torch.zeros((), device=train_ids.device)
    shuffled = train_ids[torch.randperm(len(train_ids), generator=generator, device=train_ids.device)]
    batches = shuffled.split(config.batch_size)
    # A batch bar only where an epoch is long enough to wait for (a UMLS-sized graph), gone when it ends.
    for batch in tqdm(batches, desc="batches", unit="batch", leave=False, disable=not progress or len(batches) < 500):
        loss = batch_loss(model, config, *batch.unbind(1), generator, state)
        model.zero_grad(set_to_none=True)  # the optimizer's own wraps a profiler scope: 5% of a small step
        loss.backward()
        optimizer.step()
        total.add_(loss.detach(), alpha=len(batch))
    return float(total) / max(len(train_ids), 1)


def _save(run_dir: Path, config: KGEConfig, digest: str, model: LinkPredictor, optimizer: torch.optim.Optimizer,
          generator: torch.Generator, epoch: int) -> None:
    save_checkpoint(run_dir / CHECKPOINT, {
        "epoch": epoch, "config": config.to_dict(), "train_digest": digest, "model": model.state_dict(),
        "optimizer": optimizer.state_dict(), "generator": generator.get_state(), "generator_device": generator.device.type,
    }, generator.device)  # fmt: skip


def _resume(run_dir: Path, config: KGEConfig, digest: str, model: LinkPredictor, optimizer: torch.optim.Optimizer,
            generator: torch.Generator) -> int:
    """Restore the last checkpoint into model, optimizer and RNGs; return the epochs it completed (0 if none).
    An epoch logged after the last checkpoint is run again."""
    state = resume_state(run_dir, config.resolved_device(), config.to_dict(), KGEConfig().to_dict(), RESUMABLE_CHANGES,
                         "train_digest", digest, "epoch")
    if state is None:
        return 0
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if state["generator_device"] == generator.device.type:
        generator.set_state(state["generator"].cpu())
    else:  # moved between CPU and GPU: their generator states differ, so reseed for this epoch instead
        generator.manual_seed(config.seed * 1_000_003 + state["epoch"])
    return int(state["epoch"])
