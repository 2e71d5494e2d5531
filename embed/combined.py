"""A run's scorer as `medkg embed eval` ranks with it: its model combined with the training graph's
structure (`embed.structure`) and, if asked, with other runs on the same split. The weights are fitted on
the validation split (`embed.ensemble`) and kept in the run directory beside the checkpoint:

- `ensemble.json`: {"weights": {component: w}, "valid_mrr": x, "alone": {component: valid MRR},
  "others": [run directories]};
- `degree_prior.safetensors`: the fitted degree prior's weights.

Components: the run's model (named by its model, e.g. `text`), `degree prior`, and, for runs with text
features, `answers of similar` and `resembles answers`. Another run's model is named by its model and
directory. A component with weight 0 is never computed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save

from kg.atomic import atomic_open
from kg.errors import InputError

from .ensemble import Fit, combine, fit_weights, scorer
from .evaluate import ScoreAll
from .pipeline import load_run
from .run_data import load_run_data
from .structure import DegreePrior, structure_scorers
from .train import CONFIG
from .triples import Split

ENSEMBLE = "ensemble.json"
PRIOR = "degree_prior.safetensors"


def _model_name(run: Path) -> str:
    return str(json.loads((Path(run) / CONFIG).read_text())["model"])


def _components(run: Path, others: Sequence[Path], device: str, prior: DegreePrior | None) -> tuple[dict[str, ScoreAll], Split, DegreePrior]:
    model, split = load_run(run, device)
    _, features = load_run_data(run)
    components: dict[str, ScoreAll] = {_model_name(run): scorer(model)}
    structure = structure_scorers(split.train, features, prior)
    components |= structure
    for other in others:
        other_model, other_split = load_run(other, device)
        if not torch.equal(other_split.test.stacked(), split.test.stacked()) or \
                not torch.equal(other_split.valid.stacked(), split.valid.stacked()):
            raise InputError(f"{other} holds another split than {run}: only runs made from the same graph with the same "
                             "seed and split sizes can be combined")
        components[f"{_model_name(other)} ({Path(other).name})"] = scorer(other_model)
    return components, split, structure["degree prior"]


def fit_run(run: Path, others: Sequence[Path] = (), device: str = "", progress: bool = False) -> Fit:
    """Fit the degree prior (on train) and the weights (on valid) of the run's ensemble, and keep both."""
    run = Path(run)
    components, split, prior = _components(run, others, device, None)
    if not len(split.valid):
        raise InputError(f"{run} has no validation triples to fit an ensemble's weights on")
    fit = fit_weights(components, split.valid, split.known, progress=progress)
    with atomic_open(run / PRIOR, "wb") as f:
        f.write(save({"weights": prior.weights.contiguous()}))
    with atomic_open(run / ENSEMBLE) as f:
        json.dump({"weights": fit.weights, "valid_mrr": fit.mrr, "alone": fit.alone,
                   "others": [str(Path(o).resolve()) for o in others]}, f, indent=1)
    return fit


def read_ensemble(run: Path) -> dict[str, Any] | None:
    path = Path(run) / ENSEMBLE
    return json.loads(path.read_text()) if path.exists() else None


def run_scorer(run: Path, device: str = "", structure: bool = True) -> tuple[Any, Split]:
    """(scorer, split): the run's fitted ensemble when it has one and `structure` is asked, else its model."""
    run = Path(run)
    spec = read_ensemble(run) if structure else None
    if spec is None:
        return load_run(run, device)
    train = load_run_data(run)[0].train
    prior = DegreePrior(train, load_file(str(run / PRIOR))["weights"])
    components, split, _ = _components(run, [Path(o) for o in spec["others"]], device, prior)
    if set(spec["weights"]) != set(components):
        raise InputError(f"{run / ENSEMBLE} names other components than the run has now; refit it with "
                         f"`medkg embed combine {run}`")
    return combine(components, spec["weights"]), split
