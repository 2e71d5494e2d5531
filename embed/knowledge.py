"""A knowledge encoder (KAD): a text encoder fine-tuned contrastively on the graph's pairs (`embed.pairs`),
so that a concept's names, synonyms and definition, and the phrases its graph neighbours imply, embed
near each other; prompts and entity phrases are then encoded with it (`embed_texts`).

A run directory holds `knowledge.json` (the config), `metrics.jsonl` (one object per step: step, loss,
temperature), `checkpoint.pt` (model, loss and optimizer state, step, the sampling generator's and
torch's RNG states, config, and a digest of the pairs), written every `checkpoint_every` steps, and,
once finished, the encoder itself (`TextEncoder.save_pretrained`). Run again, it resumes from the
checkpoint and ends with the same weights as a run that never stopped.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import torch
from torch import Tensor
from tqdm import tqdm

from encoders.device import resolve_device
from encoders.text import TextEncoder
from kg.atomic import atomic_open
from kg.errors import InputError
from kg.relations import RELATION_TYPES
from kg.tables import GraphTables

from .contrastive import SoftInfoNCE
from .pairs import KNOWLEDGE_RELATIONS, KnowledgePairs, knowledge_pairs
from .runs import CHECKPOINT, append_metrics, resume_state, save_checkpoint
from .triples import held_out_rows

CONFIG = "knowledge.json"  # not config.json: the finished encoder's transformers config goes there
# Fields that may change between a run and its resumption: they do not change what is trained.
RESUMABLE_CHANGES = {"steps", "checkpoint_every", "device"}


@dataclass
class KnowledgeEncoderConfig:
    """Everything that defines a run; saved with every checkpoint. Each batch holds up to `batch_size`
    pairs, up to `pairs_per_concept` of each of its concepts; a concept keeps at most
    `max_pairs_per_concept` pairs (synonyms and definition first, then its best-supported relations).

    `held_out` = (valid, test) fractions: the edges that `medkg embed train --seed SEED` with that split
    ranks its models on never become pairs (`seed` is the same). Relation pairs are link prediction in
    another form, so an encoder trained on every edge would carry the test edges into any model over its
    text features (`--text-encoder`). (0, 0) trains on every edge, for an encoder meant only for prompts."""

    encoder: str = ""  # directory of the text encoder to start from; "" = the bundled MiniLM
    relations: tuple[str, ...] = KNOWLEDGE_RELATIONS  # relation types whose edges become pairs
    steps: int = 2000
    batch_size: int = 64
    pairs_per_concept: int = 4
    max_pairs_per_concept: int = 32
    lr: float = 2e-5  # for thousands of steps; a few dozen (the test's 40) take 2e-4
    weight_decay: float = 0.01
    temperature: float = 0.05
    learn_temperature: bool = False
    max_length: int = 64  # tokens per text; definitions beyond it are cut
    checkpoint_every: int = 200
    seed: int = 0
    held_out: tuple[float, float] = (0.1, 0.1)  # medkg embed train's default --valid and --test
    device: str = ""  # "" = cuda when available, else cpu
    mixed_precision: bool = True  # bfloat16 autocast on CUDA (no loss scaling needed); CPU runs in float32

    def __post_init__(self) -> None:
        self.relations = tuple(self.relations)
        self.held_out = tuple(float(x) for x in self.held_out)  # type: ignore[assignment]
        if len(self.held_out) != 2 or min(self.held_out) < 0 or sum(self.held_out) >= 1:
            raise ValueError("held_out is (valid, test): fractions >= 0 that sum to < 1")
        if not 1 <= self.pairs_per_concept <= self.batch_size or self.steps < 0 or self.checkpoint_every < 1 \
                or self.max_length < 1:
            raise ValueError("need 1 <= pairs_per_concept <= batch_size, steps >= 0, checkpoint_every >= 1 and max_length >= 1")
        if unknown := set(self.relations) - set(RELATION_TYPES):
            raise ValueError(f"unknown relation types {sorted(unknown)}; known: {RELATION_TYPES}")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "relations": list(self.relations), "held_out": list(self.held_out)}


def train_knowledge_encoder(tables: GraphTables, run_dir: Path | str, config: KnowledgeEncoderConfig,
                            progress: bool = True) -> TextEncoder:
    """Fine-tune to `config.steps` steps, resuming from `run_dir`'s checkpoint when there is one; the
    finished encoder is saved into `run_dir` (`TextEncoder.from_pretrained(run_dir)` loads it)."""
    run_dir = Path(run_dir)
    encoder = TextEncoder.from_pretrained(config.encoder or None, resolve_device(config.device),
                                          max_length=config.max_length)
    pairs = knowledge_pairs(training_edges(tables, config), encoder.tokenizer.sep_token, config.relations,
                            config.max_pairs_per_concept)
    if not len(pairs):
        raise InputError("the graph gives no training pairs: no synonyms, definitions or relations of the types asked")
    loss_fn = SoftInfoNCE(config.temperature, config.learn_temperature).to(encoder.device)
    optimizer = torch.optim.AdamW([
        {"params": list(encoder.parameters()), "weight_decay": config.weight_decay},
        {"params": [p for p in loss_fn.parameters() if p.requires_grad], "weight_decay": 0.0},
    ], lr=config.lr)
    generator = torch.Generator().manual_seed(config.seed)  # sampling on the CPU: the same batches on any device
    torch.manual_seed(config.seed)  # dropout; a resumed run restores the state it had instead
    digest = pairs.digest()
    done = _resume(run_dir, config, digest, encoder, loss_fn, optimizer, generator)
    with atomic_open(run_dir / CONFIG) as f:
        json.dump(config.to_dict(), f, indent=2)
    encoder.train()
    bar = tqdm(range(done + 1, config.steps + 1), initial=done, total=config.steps, desc="knowledge encoder",
               unit="step", disable=not progress)
    for step in bar:
        start = time.perf_counter()
        loss = _step(encoder, loss_fn, optimizer, pairs, config, generator)
        bar.set_postfix(loss=f"{loss:.4f}")
        append_metrics(run_dir, {"step": step, "loss": loss, "temperature": float(1 / loss_fn.logit_scale.exp()),
                                 "seconds": round(time.perf_counter() - start, 4)})
        if step % config.checkpoint_every == 0 or step == config.steps:
            _save(run_dir, config, digest, encoder, loss_fn, optimizer, generator, step)
    encoder.eval()
    encoder.save_pretrained(run_dir)
    return encoder


def training_edges(tables: GraphTables, config: KnowledgeEncoderConfig) -> GraphTables:
    """The graph without the edges held out for link prediction (`KnowledgeEncoderConfig.held_out`)."""
    valid, test = config.held_out
    if not (valid or test) or not tables.relations.num_rows:
        return tables
    held = held_out_rows(tables, valid, test, config.seed)
    return GraphTables(tables.concepts, tables.relations.filter(pa.array(~held.numpy())))


def embed_texts(encoder_dir: Path | str | None, texts: Sequence[str], batch_size: int = 128,
                device: str | None = None, progress: bool = False) -> Tensor:
    """Unit vectors [len(texts), dim] of any free text (prompts, entity phrases) by the encoder in
    `encoder_dir` (a trained knowledge encoder; None = the bundled MiniLM)."""
    return TextEncoder.from_pretrained(encoder_dir, device).encode(texts, batch_size, progress)


def _step(encoder: TextEncoder, loss_fn: SoftInfoNCE, optimizer: torch.optim.Optimizer, pairs: KnowledgePairs,
          config: KnowledgeEncoderConfig, generator: torch.Generator) -> float:
    index = pairs.sample(config.batch_size, config.pairs_per_concept, generator)
    cuda = encoder.device.type == "cuda"
    with torch.autocast(encoder.device.type, torch.bfloat16, enabled=config.mixed_precision and cuda):
        left = encoder(encoder.tokenize([pairs.left[i] for i in index]))
        right = encoder(encoder.tokenize([pairs.right[i] for i in index]))
    loss = loss_fn(left.float(), right.float(), pairs.labels[index].to(encoder.device))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.item()


def _save(run_dir: Path, config: KnowledgeEncoderConfig, digest: str, encoder: TextEncoder, loss_fn: SoftInfoNCE,
          optimizer: torch.optim.Optimizer, generator: torch.Generator, step: int) -> None:
    save_checkpoint(run_dir / CHECKPOINT, {
        "step": step, "config": config.to_dict(), "pairs_digest": digest, "model": encoder.state_dict(),
        "loss": loss_fn.state_dict(), "optimizer": optimizer.state_dict(), "generator": generator.get_state(),
    }, encoder.device)  # fmt: skip


def _resume(run_dir: Path, config: KnowledgeEncoderConfig, digest: str, encoder: TextEncoder, loss_fn: SoftInfoNCE,
            optimizer: torch.optim.Optimizer, generator: torch.Generator) -> int:
    """Restore the last checkpoint; return the steps it completed (0 if none)."""
    state = resume_state(run_dir, encoder.device, config.to_dict(), KnowledgeEncoderConfig().to_dict(), RESUMABLE_CHANGES,
                         "pairs_digest", digest, "step")
    if state is None:
        return 0
    encoder.load_state_dict(state["model"])
    loss_fn.load_state_dict(state["loss"])
    optimizer.load_state_dict(state["optimizer"])
    generator.set_state(state["generator"].cpu())
    return int(state["step"])
