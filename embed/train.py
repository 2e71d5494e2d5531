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
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from kg.atomic import atomic_open

from .evaluate import evaluate
from .models import COMPLEX_HEADS, KGEConfig, LinkPredictor, build_model
from .runs import CHECKPOINT, append_metrics, resume_state, save_checkpoint
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
    for epoch in bar:
        start = time.perf_counter()
        loss = _train_epoch(model, optimizer, train_ids, config, generator, progress)
        record: dict[str, Any] = {"epoch": epoch, "loss": loss, "seconds": round(time.perf_counter() - start, 4)}
        if config.eval_every and epoch % config.eval_every == 0 and len(split.valid):
            metrics = evaluate(model, split.valid, split.known, config.eval_batch_size)
            record["valid"] = {k: metrics[k] for k in ("mrr", "hits@1", "hits@3", "hits@10", "mean_rank")}
        bar.set_postfix(loss=f"{loss:.4f}", **({"valid_mrr": f"{record['valid']['mrr']:.3f}"} if "valid" in record else {}))
        append_metrics(run_dir, record)
        _save(run_dir, config, digest, model, optimizer, generator, epoch)
    return model


def make_optimizer(model: LinkPredictor, config: KGEConfig) -> torch.optim.Optimizer:
    """Adam; the fused kernel where there is one (a single pass over the parameters instead of seven: 5x
    faster on a large entity table), the lazy sparse variant for sparse gradients."""
    if config.sparse:
        return torch.optim.SparseAdam(list(model.parameters()), lr=config.lr)
    device = next(model.parameters()).device
    return torch.optim.Adam(model.parameters(), lr=config.lr, fused=device.type in ("cpu", "cuda"))


def load_model(run_dir: Path | str, train_triples: Triples, device: str = "", features: Tensor | None = None) -> LinkPredictor:
    """The model of `run_dir`'s last checkpoint, for the training triples (and text features) it was trained on."""
    state = torch.load(Path(run_dir) / CHECKPOINT, map_location="cpu", weights_only=True)
    if state["train_digest"] != triples_digest(train_triples):
        raise ValueError(f"{run_dir} was trained on other triples")
    config = KGEConfig.from_dict({**state["config"], **({"device": device} if device else {})})
    model = build_model(config, train_triples, features)
    model.load_state_dict(state["model"])
    return model.eval()


def triples_digest(triples: Triples) -> str:
    """Identifies a training set, so that a run never resumes on other data."""
    return hashlib.sha256(triples.stacked().cpu().numpy().tobytes()).hexdigest()[:16]


def batch_loss(model: LinkPredictor, config: KGEConfig, h: Tensor, r: Tensor, t: Tensor,
               generator: torch.Generator) -> Tensor:
    """The loss of one batch of positives: over all entities (`ce`, both sides of each positive) or over
    sampled corruptions of one side per positive, chosen at random (head or tail)."""
    if config.loss == "ce":
        predict_tail = torch.arange(2 * len(h), device=h.device) < len(h)
        h, r, t = h.repeat(2), r.repeat(2), t.repeat(2)
    else:
        predict_tail = torch.rand(h.shape, generator=generator, device=h.device) < 0.5
    anchor_ids, target_ids = torch.where(predict_tail, h, t), torch.where(predict_tail, t, h)
    relations = model.relation_rows(r)
    if config.loss == "ce":
        scores, rows = _score_all(model, anchor_ids, target_ids, relations, predict_tail, config.regularization > 0)
        loss = F.cross_entropy(scores, target_ids, label_smoothing=config.label_smoothing)
    else:
        positive, negative, rows = _score_sampled(model, config, anchor_ids, target_ids, relations, predict_tail,
                                                  generator)
        if config.loss != "margin" and model.logit_offset:  # a margin ranking loss needs no offset
            positive, negative = positive + model.logit_offset, negative + model.logit_offset
        loss = _sampled_loss(config, positive, negative)
    if config.regularization:  # on the positives' entities and relations
        loss = loss + config.regularization * (_n3(rows, config.head) + _n3(relations, config.head)) / len(h)
    return loss


def _score_all(model: LinkPredictor, anchor_ids: Tensor, target_ids: Tensor, relations: Tensor, predict_tail: Tensor,
               regularize: bool) -> tuple[Tensor, Tensor | None]:
    """[batch, num_entities] scores of every entity for each query, and the positives' entity rows if asked."""
    table = model.entity_table()
    prepared = model.prepare(table)
    scores = model.similarity_all(model.query(prepared[anchor_ids], relations, predict_tail), prepared)
    return scores, table[torch.cat([anchor_ids, target_ids])] if regularize else None


def _score_sampled(model: LinkPredictor, config: KGEConfig, anchor_ids: Tensor, target_ids: Tensor,
                   relations: Tensor, predict_tail: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor | None]:
    """Positive scores [batch], negative scores [batch, negatives], and the positives' entity rows (for
    regularisation; only when `config.regularization` is set).

    A positive and its negatives share one query. With `shared_negatives`, one pool of `negatives`
    entities serves the whole batch, scored by one matrix product. Otherwise each positive gets its own;
    when these outnumber the entities and the scores are matrix products, scoring every entity once and
    picking the negatives' scores out is cheaper than gathering a [batch, negatives, dim] tensor."""
    n, k = len(anchor_ids), config.negatives
    table = model.entity_table() if model.encoder is not None else None
    if config.shared_negatives:
        pool = torch.randint(model.num_entities, (k,), generator=generator, device=anchor_ids.device)
        anchors, targets, pool_rows = model.prepared_rows(torch.cat([anchor_ids, target_ids, pool]), table).split([n, n, k])
        queries = model.query(anchors, relations, predict_tail)
        rows = model.entity_rows(torch.cat([anchor_ids, target_ids]), table) if config.regularization else None
        return model.similarity(queries, targets), model.similarity_all(queries, pool_rows), rows
    # Per row: the anchor, the target, then k random entities; two writes are cheaper than two concatenations.
    ids = torch.randint(model.num_entities, (n, 2 + k), generator=generator, device=anchor_ids.device)
    ids[:, 0], ids[:, 1] = anchor_ids, target_ids
    if not config.sparse and model.matmul_scoring and model.num_entities <= n * k:
        scores, rows = _score_all(model, anchor_ids, target_ids, relations, predict_tail, config.regularization > 0)
        scores = scores.gather(1, ids[:, 1:])
    else:
        prepared = model.prepared_rows(ids, table)
        scores = model.similarity(model.query(prepared[:, 0], relations, predict_tail).unsqueeze(1), prepared[:, 1:])
        rows = model.entity_rows(ids[:, :2].T.flatten(), table) if config.regularization else None
    return scores[:, 0], scores[:, 1:], rows


def _sampled_loss(config: KGEConfig, positive: Tensor, negative: Tensor) -> Tensor:
    """Positive scores [B] against their negatives' [B, k]."""
    if config.loss == "margin":
        return F.relu(config.margin - positive.unsqueeze(1) + negative).mean()
    if config.loss == "softmax":
        logits = torch.cat([positive.unsqueeze(1), negative], dim=1)
        return F.cross_entropy(logits, torch.zeros(len(positive), dtype=torch.long, device=positive.device),
                               label_smoothing=config.label_smoothing)
    if config.loss == "bce":
        return (F.softplus(-positive).mean() + F.softplus(negative).mean()) / 2
    weights = torch.softmax(config.adversarial_temperature * negative.detach(), dim=1)  # nssa
    return (F.softplus(-positive).mean() + (weights * F.softplus(negative)).sum(1).mean()) / 2


def _n3(rows: Tensor, head: str) -> Tensor:
    """Sum of cubed moduli (complex heads) or absolute values (real heads)."""
    if head in COMPLEX_HEADS:
        re, im = rows.chunk(2, dim=-1)
        return (re**2 + im**2).pow(1.5).sum()
    return rows.abs().pow(3).sum()


def _train_epoch(model: LinkPredictor, optimizer: torch.optim.Optimizer, train_ids: Tensor, config: KGEConfig,
                 generator: torch.Generator, progress: bool = False) -> float:
    model.train()
    total = torch.zeros((), device=train_ids.device)
    shuffled = train_ids[torch.randperm(len(train_ids), generator=generator, device=train_ids.device)]
    batches = shuffled.split(config.batch_size)
    # A batch bar only where an epoch is long enough to wait for (a UMLS-sized graph), gone when it ends.
    for batch in tqdm(batches, desc="batches", unit="batch", leave=False, disable=not progress or len(batches) < 500):
        loss = batch_loss(model, config, *batch.unbind(1), generator)
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
