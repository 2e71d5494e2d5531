"""Training a knowledge-guided aligner: one loop for one CPU, one GPU, or many under `torchrun`.

A run directory holds `config.yaml` (the validated config, with the medkg version), `checkpoint.pt`
(written atomically at every epoch end, every `train.checkpoint_every` steps and on Ctrl-C),
`metrics.csv` with a TensorBoard log beside it, and `model/` (the trained model, `AlignmentModel.
from_pretrained`). Running the same command again, or with `--resume`, continues from the checkpoint:
batches are a function of (seed, epoch), the checkpoint keeps the optimiser, schedule and RNG states,
so a run killed mid-epoch ends with the weights of an uninterrupted one. A directory holding another
run (other config or data) is refused.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm
from transformers import get_cosine_schedule_with_warmup

from embed.runs import CHECKPOINT, check_same_run, load_checkpoint, save_checkpoint
from encoders.image import ImageEncoder
from encoders.text import TextEncoder
from encoders.transforms import ImageTransform
from kg.atomic import atomic_open
from kg.errors import DamagedFileError, InputError
from kg.problems import ProblemLog

from . import runtime, zeroshot
from .batches import batches_per_epoch, epoch_batches
from .config import VERSION_KEY, AlignConfig
from .dataset import TrainingData, prepare_data
from .grad_cache import grad_cache_step
from .metrics import MetricsLog, read_metrics
from .model import AlignmentModel
from .objective import Objective

log = logging.getLogger(__name__)
CONFIG_FILE = "config.yaml"
MODEL_DIR = "model"
VOCABULARY_FILE = "vocabulary.json"
RESUMABLE = {"train.epochs", "train.eval_every", "train.checkpoint_every", "train.device", "train.threads", "train.max_minutes"}


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C: the checkpoint is saved and the run can be resumed."""


@dataclass
class TrainSummary:
    run: Path
    epochs: int
    steps: int
    loss: float
    seconds: float
    valid: dict[str, float] = field(default_factory=dict)
    skipped: str = ""
    configured_epochs: int = 0    # the config's epochs, when the time budget planned fewer

    def __str__(self) -> str:
        line = f"trained {self.epochs} epochs ({self.steps} steps), last loss {self.loss:.4f}, {self.seconds:.0f} s this run"
        if self.configured_epochs > self.epochs:
            line += f" (the time budget fitted {self.epochs} of the config's {self.configured_epochs} epochs)"
        if self.valid:
            line += "; valid " + ", ".join(f"{k} {v:.3f}" for k, v in self.valid.items())
        text = f"{line}\nmodel: {self.run / MODEL_DIR} (metrics in {self.run / 'metrics.csv'})"
        return text + (f"\nskipped input: {self.skipped}" if self.skipped else "")


def train(config: AlignConfig, out: Path, data_dir: Path, cache_dir: Path, progress: bool = True,
          problems: ProblemLog | None = None, version: str = "") -> TrainSummary:
    """Train (or resume) the run in `out`; see the module docstring for what the directory holds."""
    out = Path(out)
    problems = problems if problems is not None else ProblemLog()
    rt = runtime.start(config.train.device)
    try:
        return _train(config, out, Path(data_dir), Path(cache_dir), progress and rt.main, problems, version, rt)
    finally:
        runtime.stop(rt)


def _train(config: AlignConfig, out: Path, data_dir: Path, cache_dir: Path, progress: bool, problems: ProblemLog,
           version: str, rt: runtime.Runtime) -> TrainSummary:
    t = config.train
    if t.threads:
        torch.set_num_threads(t.threads)
    torch.manual_seed(t.seed)
    data = prepare_data(config, data_dir, cache_dir, problems, progress, rt)
    model = build_model(config, data).to(rt.device)
    if config.model.text.trainable_layers == 0:
        data.cache_text(model.text_encoder, cache_dir / "text", progress)
    objective = Objective(model, config.loss, data.entity_similarity, prototype_anchors(model, data)).to(rt.device)
    transform = ImageTransform(config.transform).to(rt.device)
    # terms a config turns off leave parameters without gradients (CLIP alone never uses the local projections)
    trained: nn.Module = DistributedDataParallel(objective, find_unused_parameters=True) if rt.world > 1 else objective
    steps_per_epoch = batches_per_epoch(len(data.train_images), t.batch_size) // t.accumulate
    if steps_per_epoch < 1:
        raise InputError(f"train.accumulate {t.accumulate} exceeds the {batches_per_epoch(len(data.train_images), t.batch_size)} "
                         "batches of an epoch")
    optimizer = torch.optim.AdamW(parameter_groups(objective, t.lr, t.text_lr, t.weight_decay))
    schedule = _schedule(optimizer, t.warmup, steps_per_epoch, t.epochs, 0)
    scaler = torch.amp.GradScaler(rt.device.type, enabled=rt.device.type == "cuda" and t.precision == "fp16")

    saved_config = {VERSION_KEY: version, **config.as_dict()}
    position = _resume(out, config, data.digest, rt, objective, optimizer, schedule, scaler)
    if rt.main:
        out.mkdir(parents=True, exist_ok=True)
        with atomic_open(out / CONFIG_FILE) as f:
            yaml.safe_dump(saved_config, f, sort_keys=False)
    metrics = MetricsLog(out, tensorboard=rt.main)
    if rt.main:
        metrics.trim(position["step"])

    started, loss_value = time.perf_counter(), float("nan")
    step, epoch, done_batches = position["step"], position["epoch"], position["batches"]
    earlier = position["seconds"]  # training time of the runs this one resumes

    scheduled = t.epochs  # the epochs the schedule decays over

    def replan(planned: int) -> int:
        """The epochs the budget fits now, agreed by all processes; the schedule follows a change."""
        nonlocal schedule, scheduled
        fitted = rt.agree(plan_epochs(t.epochs, t.max_minutes, epoch, earlier + time.perf_counter() - started, planned))
        if fitted != scheduled:
            schedule, scheduled = _schedule(optimizer, t.warmup, steps_per_epoch, fitted, step), fitted
            bar.total = steps_per_epoch * fitted
            bar.refresh()
        return fitted

    def save(batches: int) -> None:
        _save(out, rt, objective, optimizer, schedule, scaler, saved_config, data.digest,
              {"step": step, "epoch": epoch, "batches": batches, "planned": planned,
               "seconds": earlier + time.perf_counter() - started})

    interrupted, restore_sigterm = _interrupt_flag()
    planned = position["planned"]
    bar = tqdm(total=steps_per_epoch * planned, initial=step, desc="training", unit="step", disable=not progress,
               dynamic_ncols=True)
    planned = replan(planned)
    try:
        while epoch < planned:
            keep = 1.0 if epoch >= planned - t.patch_dropout_unmasked_epochs else 1.0 - t.patch_dropout
            objective.train()
            pending = 0
            for index, batch in enumerate(epoch_batches(len(data.train_images), len(data.train_reports), t.batch_size,
                                                        t.seed, epoch, data.pairing(), rt.rank, rt.world)):
                if index < done_batches:
                    continue
                if index >= steps_per_epoch * t.accumulate:
                    break
                inputs = data.inputs(batch, transform, rt.device, keep)
                if t.grad_cache_chunk:  # encoders in chunks, same gradient (averaged over processes there, not by DDP)
                    terms = grad_cache_step(objective, inputs, t.grad_cache_chunk,
                                            lambda loss: scaler.scale(loss / t.accumulate), lambda: rt.autocast(t.precision))
                else:
                    with rt.autocast(t.precision):
                        terms = trained(inputs)
                    scaler.scale(terms["loss"] / t.accumulate).backward()
                pending += 1
                if pending < t.accumulate:
                    continue
                pending = 0
                if epoch < config.loss.freeze_prototypes_epochs and objective.prototypes is not None:
                    objective.prototypes.prototypes.grad = None  # MGCA holds the prototypes still at first
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], t.max_grad_norm)
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
                schedule.step()
                step += 1
                done_batches = index + 1
                loss_value = float(terms["loss"].detach())
                if rt.main:
                    metrics.log(step, epoch, "train", {**{k: float(v.detach()) for k, v in terms.items()},
                                                       "temperature": model.temperature(), "lr": schedule.get_last_lr()[0]})
                bar.update(1)
                bar.set_postfix(epoch=epoch + 1, loss=f"{loss_value:.3f}")
                if interrupted():
                    raise KeyboardInterrupt
                if t.checkpoint_every and step % t.checkpoint_every == 0:
                    save(done_batches)
            epoch, done_batches = epoch + 1, 0
            planned = replan(planned)
            if t.eval_every and (epoch % t.eval_every == 0 or epoch == planned) and rt.main:
                valid = validate(model, data, transform)
                metrics.log(step, epoch - 1, "valid", valid)
            save(0)
    except KeyboardInterrupt:
        save(done_batches)
        raise TrainingInterrupted(f"stopped at step {step}; the checkpoint is saved in {out / CHECKPOINT}: "
                                  "run the same command again to resume") from None
    finally:
        restore_sigterm()
        bar.close()
        metrics.close()
    if rt.main:
        model.save_pretrained(out / MODEL_DIR)
        data.vocabulary.save(out / VOCABULARY_FILE)  # labels, concept ids and synonyms of the model's entities
    valid_rows = [r for r in read_metrics(metrics.path) if r["split"] == "valid"]
    last_valid = {r["name"]: r["value"] for r in valid_rows if r["step"] == valid_rows[-1]["step"]} if valid_rows else {}
    return TrainSummary(out, epoch, step, loss_value, time.perf_counter() - started, last_valid, problems.summary(),
                        t.epochs)


def build_model(config: AlignConfig, data: TrainingData) -> AlignmentModel:
    """A fresh model: encoders from local weights when the config names them, else built from the config."""
    m = config.model
    image = (ImageEncoder.from_pretrained(m.image.pretrained, device="cpu", channels=m.image.channels,
                                          image_size=m.image.image_size)
             if m.image.pretrained else ImageEncoder.from_config(m.image, device="cpu"))
    text = TextEncoder.from_pretrained(m.text.encoder or None, device="cpu", max_length=m.text.max_length)
    return AlignmentModel(m, data.vocabulary.names, data.entity_queries, image, text)


def prototype_anchors(model: AlignmentModel, data: TrainingData) -> torch.Tensor | None:
    """The entities' vectors in the shared space, through the text projection at initialisation: the label
    findings and frequent report findings the knowledge-anchored prototypes start at and stay near."""
    if data.entity_queries.shape[1] != model.text_global.in_features:
        return None
    with torch.no_grad():
        return model.text_global(data.entity_queries.to(model.device)).detach()


def parameter_groups(module: nn.Module, lr: float, text_lr: float, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: the pretrained text encoder at its own rate; no decay on biases, norms, the
    temperature and the prototypes."""
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    for name, parameter in module.named_parameters():
        if not parameter.requires_grad:
            continue
        rate = text_lr if ".text_encoder." in f".{name}" else lr
        decay = 0.0 if parameter.ndim < 2 or name.endswith(("logit_scale", "prototypes")) else weight_decay
        groups.setdefault((rate, decay), []).append(parameter)
    return [{"params": params, "lr": rate, "weight_decay": decay} for (rate, decay), params in groups.items()]


def validate(model: AlignmentModel, data: TrainingData, transform: ImageTransform) -> dict[str, float]:
    """Mean zero-shot AUC over the label entities on the validation patients (prompt score, and the
    entity decoder's when the model has one)."""
    images, states = data.split_images("valid")
    if not len(images):
        return {}
    rows = list(range(data.vocabulary.num_labels))
    scores = zeroshot.image_scores(model, images, transform, rows)
    labels = [str(data.vocabulary.labels[r]) for r in rows]
    return {f"{kind}_mean_auc": zeroshot.mean(zeroshot.label_aucs(s, states[:, rows], labels)) for kind, s in scores.items()}


def plan_epochs(epochs: int, max_minutes: float, done: int, seconds: float, planned: int) -> int:
    """The epochs a run trains: the config's `epochs`, or with a time budget of `max_minutes`, as many as fit
    at the pace of the `done` epochs so far (`seconds` of training), never fewer than are done. Planned at
    every epoch end, so the cosine schedule decays to its end within the budget (a run stopped by a deadline
    mid-schedule would end at a high learning rate); the overrun is at most the epoch that finds the budget
    spent."""
    if max_minutes <= 0:
        return epochs
    if done == 0:
        return planned
    fits = done + int(max(0.0, max_minutes * 60 - seconds) // (seconds / done))
    return max(done, min(epochs, fits))


def _schedule(optimizer: torch.optim.Optimizer, warmup: float, steps_per_epoch: int, epochs: int, step: int) -> Any:
    """Linear warm-up over the `warmup` share of the steps, then cosine decay to 0, positioned at `step`."""
    total = steps_per_epoch * epochs
    return get_cosine_schedule_with_warmup(optimizer, round(warmup * total), total, last_epoch=step - 1)


def _resume(out: Path, config: AlignConfig, digest: str, rt: runtime.Runtime, objective: Objective,
            optimizer: torch.optim.Optimizer, schedule: Any, scaler: torch.amp.GradScaler) -> dict[str, Any]:
    if not (out / CHECKPOINT).exists():
        return _fresh(config)
    try:
        state = load_checkpoint(out / CHECKPOINT, rt.device)
    except Exception as error:  # a truncated or foreign file: say so, never a stack trace
        raise DamagedFileError(f"{out / CHECKPOINT} is damaged ({type(error).__name__}); delete it to start over, "
                               "or use a new run directory") from None
    saved = {k: v for k, v in state["config"].items() if k != VERSION_KEY}
    check_same_run(out, _flat(saved), _flat(config.as_dict()), RESUMABLE, state["digest"], digest)
    objective.load_state_dict(state["objective"])
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    scaler.load_state_dict(state["scaler"])
    if rt.main:
        log.warning("resuming %s at epoch %d, step %d", out, state["epoch"] + 1, state["step"])
    fresh = _fresh(config)
    return {**fresh, **{k: state[k] for k in fresh if k in state}}


def _fresh(config: AlignConfig) -> dict[str, Any]:
    """Where a new run starts: step 0, the config's epochs planned, no training time spent."""
    return {"step": 0, "epoch": 0, "batches": 0, "planned": config.train.epochs, "seconds": 0.0}


def _save(out: Path, rt: runtime.Runtime, objective: Objective, optimizer: torch.optim.Optimizer, schedule: Any,
          scaler: torch.amp.GradScaler, config: dict[str, Any], digest: str, position: dict[str, Any]) -> None:
    """`position`: step, epoch, batches done in it, planned epochs and training seconds so far."""
    if not rt.main:
        return
    save_checkpoint(out / CHECKPOINT, {
        "objective": objective.state_dict(), "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
        "scaler": scaler.state_dict(), "config": config, "digest": digest, **position,
    }, rt.device)


def _flat(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _interrupt_flag():
    """Ctrl-C (SIGINT) and SIGTERM (a scheduler's stop) set a flag: the loop checkpoints after the current step
    and stops, so neither lands inside library code (an interrupted TensorBoard write can hang its close). A
    second Ctrl-C stops at once. Returns the flag and a function that puts the previous handlers back
    (training called from a process that lives on: a notebook, a test session)."""
    received = {"stop": False}
    if threading.current_thread() is not threading.main_thread():
        return (lambda: received["stop"]), (lambda: None)

    def stop(signum: int, frame: Any) -> None:
        if received["stop"] and signum == signal.SIGINT:
            raise KeyboardInterrupt
        received["stop"] = True
        if signum == signal.SIGINT:
            log.warning("stopping after this step, with a checkpoint (Ctrl-C again to stop at once)")

    previous = {signum: signal.signal(signum, stop) for signum in (signal.SIGINT, signal.SIGTERM)}

    def restore() -> None:
        for signum, handler in previous.items():  # None: a handler installed outside Python
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)

    return (lambda: received["stop"]), restore
