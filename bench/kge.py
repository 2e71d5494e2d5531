"""Knowledge-graph embedding benchmark: medkg's training against PyKEEN's, then medkg on the open graph.

Why: graph embeddings are retrained whenever the graph changes, on CPU as often as on GPU. The goal is
at least 10x PyKEEN's training speed at an equal or better filtered MRR, with the same model and the
same settings, and an MRR of at least 0.90 on UMLS with medkg's best model. In one run this bench

- loads the small UMLS benchmark that PyKEEN's wheel ships (135 entities, 46 relations, 5,216 / 652 /
  661 train / valid / test triples) and feeds PyKEEN's own split to both libraries, so the MRRs compare;
- trains TransE and RotatE with medkg (`embed.train.train`, a checkpoint and a log line every epoch
  included in the time) and with PyKEEN (`pykeen.pipeline.pipeline`, sLCWA, its `train_seconds`), each
  pair with the same dimension, loss, margin, negatives per positive, sampler (uniform head or tail
  corruption), epochs, batch size, Adam learning rate and seed; prints training triples/s (training
  triples x epochs / training seconds), filtered MRR and Hits@1/3/10 on test, and the speed ratio;
- ranks PyKEEN's trained model with medkg's evaluator too: the two MRRs of one model must agree, a
  check of medkg's filtered ranking against PyKEEN's (realistic ranks, train + valid + test filtered);
- trains medkg's best UMLS model (ComplEx, 1-N cross-entropy over all entities);
- on the open radiology graph (`--open-kg`, built first if missing) trains each `medkg embed train`
  preset of `OPEN_TABLE` (TransE, RotatE, RGCN and FiLM encoders, the text predictor) into `--runs`
  in a child process (its wall time and its own peak memory), evaluates each on test, adds the
  frequency baseline (entities ranked by how often they fill the relation's slot in training) and
  the combinations of `COMBINATIONS` (the text predictor, RotatE and the graph's structure scores of
  `embed.structure`, weights chosen on valid), and prints one table overall and one per relation.

Run from the repository root:

    .venv/bin/python bench/kge.py [--threads 2] [--open-kg out/open-kg] [--data-dir ../shared/data]
                                  [--runs out/kge-open] [--skip-pykeen] [--skip-open] [--skip-umls]

Timings depend on the machine and on other load: compare figures from one run only. The run exits 1
when the two evaluators disagree on a PyKEEN model; a missed goal is only reported.
"""

from __future__ import annotations

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path
from typing import Any  # noqa: E402

import _root  # noqa: E402,F401  (first: the repository root on sys.path)
import torch  # noqa: E402
from torch import Tensor  # noqa: E402

from embed.evaluate import ScoreAll, evaluate  # noqa: E402
from embed.models import KGEConfig  # noqa: E402
from embed.structure import DegreePrior, irreflexive, slot_degrees, structure_scorers  # noqa: E402
from embed.train import train  # noqa: E402
from embed.triples import Split, Triples  # noqa: E402

# The compared settings: TransE as PyKEEN's defaults have it (margin ranking, L1 distance) and RotatE
# with its paper's self-adversarial loss. medkg and PyKEEN get exactly these.
COMPARED = {
    "TransE": KGEConfig(model="transe", dim=64, loss="margin", margin=1.0, p_norm=1.0, lr=0.01, batch_size=256,
                        negatives=1, epochs=200),
    "RotatE": KGEConfig(model="rotate", dim=128, loss="nssa", margin=9.0, adversarial_temperature=1.0, lr=0.01,
                        batch_size=256, negatives=32, epochs=100),
}
BEST_UMLS = KGEConfig(model="complex", dim=256, loss="ce", regularization=0.005, lr=0.01, batch_size=256, epochs=100)
OPEN_TABLE = ("transe", "rotate", "rgcn-distmult", "film-distmult", "text")  # `medkg embed train` presets
STRUCTURE = ("degree prior", "resembles answers")
COMBINATIONS = {"text + rotate": ("text", "rotate"), "text + structure": ("text", *STRUCTURE),
                "rotate + structure": ("rotate", *STRUCTURE), "text + rotate + structure": ("text", "rotate", *STRUCTURE)}
PYKEEN_LOSSES = {"margin": ("marginranking", lambda c: {"margin": c.margin}),
                 "nssa": ("nssa", lambda c: {"margin": c.margin, "adversarial_temperature": c.adversarial_temperature})}
METRICS = ("mrr", "hits@1", "hits@3", "hits@10")


def umls_split() -> tuple[Split, Any]:
    """PyKEEN's UMLS dataset and its own split as medkg triples (same ids)."""
    from pykeen.datasets import UMLS

    dataset = UMLS()
    entities = sorted(dataset.entity_to_id, key=dataset.entity_to_id.__getitem__)
    relations = sorted(dataset.relation_to_id, key=dataset.relation_to_id.__getitem__)

    def convert(factory: Any) -> Triples:
        m = factory.mapped_triples
        return Triples.from_arrays(m[:, 0], m[:, 1], m[:, 2], entity_names=entities, relation_names=relations)

    return Split(convert(dataset.training), convert(dataset.validation), convert(dataset.testing)), dataset


def run_medkg(config: KGEConfig, split: Split, per_relation: bool = False, features: Tensor | None = None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="medkg-kge-") as run_dir:
        start = time.perf_counter()
        model = train(config, split, run_dir, progress=False, features=features)
        seconds = time.perf_counter() - start
    start = time.perf_counter()
    metrics = evaluate(model, split.test, split.known, per_relation=per_relation)
    metrics["eval_seconds"] = time.perf_counter() - start
    metrics["seconds"] = seconds
    metrics["triples_per_s"] = len(split.train) * config.epochs / seconds
    return metrics


def run_pykeen(name: str, config: KGEConfig, dataset: Any, split: Split) -> tuple[dict[str, Any], dict[str, Any]]:
    """PyKEEN's pipeline with `config`'s settings: its own metrics, and its model ranked by medkg."""
    from pykeen.pipeline import pipeline

    loss, loss_kwargs = PYKEEN_LOSSES[config.loss]
    model_kwargs: dict[str, Any] = {"embedding_dim": config.dim}
    if config.head == "transe":
        model_kwargs["scoring_fct_norm"] = int(config.p_norm)
    result = pipeline(
        training=dataset.training, validation=dataset.validation, testing=dataset.testing,
        model=name, model_kwargs=model_kwargs, loss=loss, loss_kwargs=loss_kwargs(config),
        optimizer="adam", optimizer_kwargs={"lr": config.lr},
        negative_sampler="basic", negative_sampler_kwargs={"num_negs_per_pos": config.negatives},
        training_kwargs={"num_epochs": config.epochs, "batch_size": config.batch_size, "use_tqdm": False},
        random_seed=config.seed, device=str(config.resolved_device()), use_tqdm=False,
    )
    flat = result.metric_results.to_flat_dict()
    own = {"mrr": flat["both.realistic.inverse_harmonic_mean_rank"], "seconds": result.train_seconds,
           "triples_per_s": len(split.train) * config.epochs / result.train_seconds}
    own.update({f"hits@{k}": flat[f"both.realistic.hits_at_{k}"] for k in (1, 3, 10)})
    model = result.model.eval()
    device = next(model.parameters()).device

    def score_all(anchors: Tensor, relations: Tensor, predict_tail: bool) -> Tensor:
        pairs = torch.stack([anchors, relations] if predict_tail else [relations, anchors], dim=1).to(device)
        return (model.score_t(pairs) if predict_tail else model.score_h(pairs)).cpu()

    return own, evaluate(score_all, split.test, split.known)


def row(library: str, model: str, config: KGEConfig, m: dict[str, Any]) -> str:
    return (f"{library:<8} {model:<8} {config.epochs:>6} {m['seconds']:>9.1f} {m['triples_per_s']:>12,.0f} "
            + " ".join(f"{m[k]:>7.4f}" for k in METRICS))


HEADER = f"{'library':<8} {'model':<8} {'epochs':>6} {'train s':>9} {'triples/s':>12} " + " ".join(f"{k:>7}" for k in METRICS)


def compare_umls(skip_pykeen: bool) -> bool:
    """medkg against PyKEEN; False when the two evaluators disagree on a PyKEEN model."""
    split, dataset = umls_split()
    print(f"UMLS: {split.train.num_entities} entities, {split.train.num_relations} relations, "
          f"{len(split.train)} / {len(split.valid)} / {len(split.test)} train / valid / test triples\n")
    print(HEADER)
    agree = True
    for name, config in COMPARED.items():
        ours = run_medkg(config, split)
        print(row("medkg", name, config, ours), flush=True)
        if skip_pykeen:
            continue
        theirs, reranked = run_pykeen(name, config, dataset, split)
        print(row("PyKEEN", name, config, theirs), flush=True)
        print(f"{'':<8} {name:<8} medkg/PyKEEN speed {ours['triples_per_s'] / theirs['triples_per_s']:.1f}x, "
              f"MRR {ours['mrr'] - theirs['mrr']:+.4f}; PyKEEN's model ranked by medkg's evaluator: "
              f"MRR {reranked['mrr']:.4f} (PyKEEN's own {theirs['mrr']:.4f})", flush=True)
        agree &= abs(reranked["mrr"] - theirs["mrr"]) < 1e-3
    best = run_medkg(BEST_UMLS, split)
    print(row("medkg", "ComplEx", BEST_UMLS, best) + "   <- best: 1-N cross-entropy, N3", flush=True)
    print(f"UMLS MRR goal 0.90: {'met' if best['mrr'] >= 0.90 else 'MISSED'} ({best['mrr']:.4f})\n")
    if not agree:
        print("ERROR: medkg's evaluator and PyKEEN's disagree on a PyKEEN model")
    return agree


def frequency_baseline(split: Split) -> ScoreAll:
    """Scores an entity by how often it fills the asked slot of the relation in training: the prior a
    model must beat to have learned anything about the particular query."""
    as_head, as_tail = slot_degrees(split.train)
    return lambda anchors, relations, predict_tail: (as_tail if predict_tail else as_head)[relations]


def train_open_run(model: str, kg_dir: Path, run: Path, threads: int) -> dict[str, float]:
    """`medkg embed train --model MODEL` (its preset) as a child process: wall seconds and the child's
    own peak resident memory (os.wait4), so each model's memory is its own. A finished run is kept."""
    medkg = Path(sys.executable).parent / "medkg"
    command = [str(medkg), "embed", "train", "--kg", str(kg_dir), "--model", model, "--out", str(run), "-q", "--no-structure"]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    child = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command)} failed")
    return {"seconds": time.perf_counter() - start, "peak_gb": usage.ru_maxrss / 2**20}


def open_graph(kg_dir: Path, data_dir: Path | None, runs: Path, threads: int) -> None:
    """Every model of `OPEN_TABLE` trained by `medkg embed train` (its preset) into `runs`, the frequency
    baseline, and the `COMBINATIONS` of the text predictor, RotatE and the structure scores, weights chosen
    on valid; one table on test."""
    from embed.ensemble import combine, fit_weights, scorer
    from embed.pipeline import load_run
    from embed.run_data import load_run_data
    from medkg.api.embed import evaluate as evaluate_run

    _root.ensure_kg(kg_dir, data_dir)
    results: dict[str, dict[str, Any]] = {}
    cost: dict[str, dict[str, float]] = {}
    for model in OPEN_TABLE:
        run = runs / model
        if not (run / "bench.json").exists():  # trained (or resumed) once; a finished run is kept
            cost[model] = train_open_run(model, kg_dir, run, threads)
            (run / "bench.json").write_text(json.dumps(cost[model]))
        cost[model] = json.loads((run / "bench.json").read_text())
        results[model] = evaluate_run(run, progress=False)
        print(f"{model}: test MRR {results[model]['mrr']:.4f}, {cost[model]['seconds']:.0f} s, "
              f"peak {cost[model]['peak_gb']:.1f} GB", flush=True)
    text, split = load_run(runs / "text")
    rotate, rotate_split = load_run(runs / "rotate")
    if not torch.equal(split.test.stacked(), rotate_split.test.stacked()):
        raise SystemExit("the text and RotatE runs hold different splits")
    started = time.perf_counter()
    structure = structure_scorers(split.train, load_run_data(runs / "text")[1], DegreePrior(split.train).fit(split.train))
    print(f"structure scores: degree prior fitted in {time.perf_counter() - started:.0f} s", flush=True)
    components = {"text": scorer(text), "rotate": scorer(rotate), **structure}
    for name, parts in COMBINATIONS.items():
        started = time.perf_counter()
        never_self = irreflexive(split.train) if set(parts) & set(structure) else None  # a structure rule as well
        fit = fit_weights({k: components[k] for k in parts}, split.valid, split.known, never_self=never_self)
        print(f"{name}: valid MRR {fit.mrr:.4f} (alone: " + ", ".join(f"{k} {m:.4f}" for k, m in fit.alone.items())
              + "), weights " + ", ".join(f"{k} {w:g}" for k, w in fit.weights.items())
              + f"; fitted in {time.perf_counter() - started:.0f} s", flush=True)
        results[name] = evaluate(combine(components, fit.weights, never_self), split.test, split.known, per_relation=True)
    results["frequency"] = evaluate(frequency_baseline(split), split.test, split.known, per_relation=True)
    print(f"\n{'model':<16} {'MRR':>7} {'H@1':>7} {'H@3':>7} {'H@10':>7} {'train s':>8} {'peak GB':>8}")
    for name, m in results.items():
        c = cost.get(name, {})
        print(f"{name:<16} " + " ".join(f"{m[k]:>7.4f}" for k in METRICS)
              + f" {c.get('seconds', 0):>8.0f} {c.get('peak_gb', 0):>8.1f}")
    names = sorted(results["frequency"]["per_relation"])
    print(f"\n{'relation MRR':<16} " + " ".join(f"{n:>14}" for n in names))
    for name, m in results.items():
        print(f"{name:<16} " + " ".join(f"{m['per_relation'][n]['mrr']:>14.4f}" for n in names))
    print("(filtered, test split; combination weights chosen on valid)")


def quiet_pykeen() -> None:
    """PyKEEN sets its logger to INFO on import and warns about CPU batch sizes and pinned memory."""
    import pykeen  # noqa: F401

    for name in ("pykeen", "torch_max_mem"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*pin_memory.*")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch threads for both libraries (default 2)")
    parser.add_argument("--open-kg", type=Path, default=Path("out/open-kg"))
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--skip-pykeen", action="store_true", help="medkg only")
    parser.add_argument("--skip-open", action="store_true", help="UMLS only")
    parser.add_argument("--skip-umls", action="store_true", help="the open graph only")
    parser.add_argument("--runs", type=Path, default=Path("out/kge-open"), help="open-graph run directories (kept)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    quiet_pykeen()
    device = KGEConfig().resolved_device()
    print(f"torch {torch.__version__}, {args.threads} threads, device {device}, load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}\n")
    ok = args.skip_umls or compare_umls(args.skip_pykeen)
    if not args.skip_open:
        open_graph(args.open_kg, args.data_dir, args.runs, args.threads)
    print(f"\nload average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
