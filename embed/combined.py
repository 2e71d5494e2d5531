"""A run's scorer as `medkg embed eval` ranks with it: its model combined with the training graph's
structure (`embed.structure`) and, if asked, with other runs on the same split. The weights are fitted on
the validation split (`embed.ensemble`) and kept in the run directory beside the checkpoint:

- `ensemble.json`: {"weights": {component: w}, "valid_mrr": x, "alone": {component: valid MRR},
  "others": [run directories], "never_self": [relations for which the anchor is never its own answer]};
- `degree_prior.safetensors`: the fitted degree prior's weights.

Components: the run's model (named by its model, e.g. `text`), `degree prior`, and, for runs with text
features, `resembles answers`. Another run's model is named by its model and directory. When ranking,
a component with weight 0 is never computed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save
from torch import Tensor

from kg.atomic import atomic_open
from kg.errors import InputError

from .ensemble import Fit, combine, fit_weights, scorer
from .evaluate import ScoreAll
from .pipeline import load_run
from .run_data import load_run_data
from .runs import CHECKPOINT
from .structure import DegreePrior, irreflexive, structure_scorers
from .train import CONFIG, load_model
from .triples import Split

ENSEMBLE = "ensemble.json"
PRIOR = "degree_prior.safetensors"


def _model_name(run: Path) -> str:
    return str(json.loads((Path(run) / CONFIG).read_text())["model"])


def _others(run: Path, split: Split, others: Sequence[Path], device: str) -> dict[str, ScoreAll]:
    """The other runs' models by name, each checked to hold the run's split. A run is named by its model and
    directory name, or by its whole path where two directories share a name."""
    paths = [Path(other).resolve() for other in others]
    if repeated := sorted({str(p) for p in paths if paths.count(p) > 1 or p == Path(run).resolve()}):
        raise InputError(f"{', '.join(repeated)}: a run can be in its own ensemble only once")
    unique = len({p.name for p in paths}) == len(paths)
    scored: dict[str, ScoreAll] = {}
    for other, path in zip(others, paths):
        other_model, other_split = load_run(other, device)
        if not torch.equal(other_split.test.stacked(), split.test.stacked()) or \
                not torch.equal(other_split.valid.stacked(), split.valid.stacked()):
            raise InputError(f"{other} holds another split than {run}: only runs made from the same graph with the same "
                             "seed and split sizes can be combined")
        scored[f"{_model_name(other)} ({path.name if unique else path})"] = scorer(other_model)
    return scored


def _components(run: Path, split: Split, features: Tensor | None, prior: DegreePrior, device: str,
                others: dict[str, ScoreAll]) -> dict[str, ScoreAll]:
    """The run's model (on the split and features already read), the structure scores, then `others`."""
    components: dict[str, ScoreAll] = {_model_name(run): scorer(load_model(run, split.train, device, features))}
    return components | structure_scorers(split.train, features, prior) | others


def fit_run(run: Path, others: Sequence[Path] = (), device: str = "", progress: bool = False) -> Fit:
    """Fit the degree prior (on train) and the weights (on valid) of the run's ensemble, and keep both."""
    run = Path(run)
    split, features = load_run_data(run)
    scored = _others(run, split, others, device)
    if not len(split.valid):
        raise InputError(f"{run} has no validation triples to fit an ensemble's weights on")
    prior = DegreePrior(split.train).fit(split.train)
    never_self = irreflexive(split.train)
    fit = fit_weights(_components(run, split, features, prior, device, scored), split.valid, split.known, progress=progress,
                      never_self=never_self)
    with atomic_open(run / PRIOR, "wb") as f:
        f.write(save({"weights": prior.weights.contiguous()}))
    with atomic_open(run / ENSEMBLE) as f:
        json.dump({"weights": fit.weights, "valid_mrr": fit.mrr, "alone": fit.alone,
                   "others": [str(Path(o).resolve()) for o in others],
                   "never_self": [name for name, ruled in zip(split.train.relation_names, never_self.tolist()) if ruled]},
                  f, indent=1)
    return fit


def read_ensemble(run: Path) -> dict[str, Any] | None:
    path = Path(run) / ENSEMBLE
    return json.loads(path.read_text()) if path.exists() else None


def current_fit(run: Path) -> Fit | None:
    """The run's kept structure ensemble (no other runs in it) when it was fitted after the model's last
    checkpoint: a finished run trained again with nothing left to train need not be refitted."""
    run = Path(run)
    spec = read_ensemble(run)
    if spec is None or spec["others"] or "never_self" not in spec or \
            (run / ENSEMBLE).stat().st_mtime < (run / CHECKPOINT).stat().st_mtime:
        return None  # fitted with other runs, before the anchor rule, or before the model's last epoch
    return Fit(spec["weights"], spec["valid_mrr"], spec["alone"])


def run_scorer(run: Path, device: str = "", structure: bool = True) -> tuple[Any, Split]:
    """(scorer, split): the run's fitted ensemble when it has one and `structure` is asked, else its model."""
    run = Path(run)
    spec = read_ensemble(run) if structure else None
    if spec is None:
        return load_run(run, device)
    split, features = load_run_data(run)
    prior = DegreePrior(split.train, load_file(str(run / PRIOR))["weights"])
    components = _components(run, split, features, prior, device, _others(run, split, [Path(o) for o in spec["others"]], device))
    if set(spec["weights"]) != set(components):
        raise InputError(f"{run / ENSEMBLE} names other components than the run has now; refit it with "
                         f"`medkg embed combine {run}`")
    never_self = None  # an ensemble fitted before the anchor rule ranks as it was fitted
    if "never_self" in spec:
        never_self = torch.tensor([name in spec["never_self"] for name in split.train.relation_names])
    return combine(components, spec["weights"], never_self), split
