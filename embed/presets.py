"""Starting hyperparameters per model name, as `medkg embed train --model NAME` uses them.

Measured on the open radiology graph and the UMLS benchmark (docs/BENCHMARKS.md); any field can be
overridden. GNN encoders run over the whole graph for every batch, so they take large batches (seven
passes per epoch on the open graph, 9 s). Every model scores against one shared pool of negatives per
batch: on the open graph, several times faster per epoch than negatives per positive or 1-N scoring."""

from __future__ import annotations

from typing import Any

from kg.errors import InputError

from .models import ENCODERS, HEADS, KGEConfig

SAMPLED: dict[str, Any] = {"batch_size": 1024, "negatives": 1024, "shared_negatives": True, "epochs": 40}
SHALLOW: dict[str, dict[str, Any]] = {
    "transe": {"dim": 128, "loss": "margin", "margin": 1.0, **SAMPLED},
    "distmult": {"dim": 128, "loss": "softmax", "regularization": 0.01, **SAMPLED},
    "rotate": {"dim": 128, "loss": "nssa", "margin": 9.0, **SAMPLED},
    "complex": {"dim": 128, "loss": "softmax", "regularization": 0.01, **SAMPLED},
    # SimKGC's batch and margin; small MLPs over frozen text vectors take a larger rate than a transformer.
    "text": {"loss": "infonce", "batch_size": 512, "lr": 0.001, "epochs": 8, "additive_margin": 0.02},
}
ENCODED: dict[str, Any] = {"dim": 128, "loss": "softmax", "batch_size": 8192, "negatives": 4096, "shared_negatives": True,
                           "lr": 0.01, "encoder_layers": 2, "encoder_bases": 4, "encoder_dropout": 0.1}
MODEL_NAMES = (*HEADS, *(f"{encoder}-{head}" for encoder in ENCODERS for head in HEADS if HEADS[head].encodable))


def preset(model: str, **overrides: Any) -> KGEConfig:
    """The starting configuration of `model` (a name in MODEL_NAMES) with `overrides` applied."""
    if model not in MODEL_NAMES:
        raise InputError(f"unknown model {model!r}; choose from {', '.join(MODEL_NAMES)}")
    head = model.rpartition("-")[2]
    if head == "text" and overrides.get("text_features") is False:
        raise InputError("the text model ranks concepts by their text: it cannot train without text features")
    values = {**SHALLOW[head], **(ENCODED if "-" in model else {}), "model": model}
    try:
        return KGEConfig(**{**values, **{k: v for k, v in overrides.items() if v is not None}})
    except ValueError as error:  # a setting the user gave (--epochs -1, --dim 0, ...)
        raise InputError(f"{model}: {error}") from None
