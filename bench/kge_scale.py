"""Knowledge-graph embedding at UMLS size: one training epoch over a synthetic graph of 1M concepts and
10M relations on CPU, within the memory of a 24 GB machine.

Why: the full UMLS holds about 3M concepts and tens of millions of relations; a graph of 1M / 10M is
the size the issue names, and what has to train without a GPU. The measured choice is a shallow
model with sparse updates: each batch touches only the rows of its triples and of one shared pool of
negatives (`KGEConfig(sparse=True, shared_negatives=True)`, a lazy Adam over those rows). The GNN
encoders (`rgcn-*`) are full-batch and meant for graphs the size of the open radiology graph; at this
size a full RGCN pass alone would hold 20M edge messages per layer.

In one run the bench generates the graph (power-law entity popularity, 24 relation types), prints
the generation time apart, then

- trains one full epoch of ComplEx (dim 64, batch 8,192, 1,024 shared negatives, softmax loss) with
  sparse updates: wall time, training triples/s, and peak resident memory of the process;
- as the baseline in the same run, trains dense (`sparse=False`: every step updates the full 1M-row
  tables with Adam) for `--baseline-batches` batches of the same size, and prints the speed ratio.

Run from the repository root:

    .venv/bin/python bench/kge_scale.py [--concepts 1000000] [--relations 10000000] [--threads 2]
"""

from __future__ import annotations

from pathlib import Path

import _root  # noqa: E402,F401  (first: the repository root on sys.path)

import argparse  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

from embed.models import KGEConfig, build_model  # noqa: E402
from embed.train import batch_loss, make_optimizer, train  # noqa: E402
from embed.triples import Split, Triples  # noqa: E402

RELATION_TYPES = 24


def synthetic_triples(n_entities: int, n_relations: int, seed: int) -> Triples:
    """Heads and tails drawn with Zipf-like popularity (a few hub concepts, a long tail), as in UMLS."""
    generator = torch.Generator().manual_seed(seed)
    popularity = (torch.randperm(n_entities, generator=generator).double() + 1.0) ** -0.8
    draw = int(n_relations * 1.02)  # duplicates are dropped by Triples.from_arrays
    heads = torch.multinomial(popularity, draw, replacement=True, generator=generator)
    tails = torch.multinomial(popularity, draw, replacement=True, generator=generator)
    relations = torch.randint(RELATION_TYPES, (draw,), generator=generator)
    triples = Triples.from_arrays(heads, relations, tails, n_entities, RELATION_TYPES)
    return triples.select(torch.arange(min(n_relations, len(triples))))


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # kilobytes on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concepts", type=int, default=1_000_000)
    parser.add_argument("--relations", type=int, default=10_000_000)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--baseline-batches", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    started = time.perf_counter()
    triples = synthetic_triples(args.concepts, args.relations, args.seed)
    print(f"generated {triples.num_entities:,} concepts, {len(triples):,} relations, {RELATION_TYPES} relation types "
          f"in {time.perf_counter() - started:.1f} s; peak memory {peak_rss_gb():.2f} GB", flush=True)

    config = KGEConfig(model="complex", dim=64, loss="softmax", batch_size=8192, negatives=1024, shared_negatives=True,
                       sparse=True, lr=0.01, epochs=1, device="cpu")
    empty = triples.select(torch.arange(0))
    with tempfile.TemporaryDirectory() as run_dir:
        started = time.perf_counter()
        train(config, Split(triples, empty, empty), run_dir, progress=True)
        sparse_s = time.perf_counter() - started
        checkpoint_mb = (Path(run_dir) / "checkpoint.pt").stat().st_size / 1024**2
    sparse_rate = len(triples) / sparse_s
    print(f"\nsparse, one epoch : {sparse_s:7.1f} s = {sparse_rate:,.0f} triples/s, checkpoint {checkpoint_mb:,.0f} MB "
          f"(epoch time includes writing it); peak memory {peak_rss_gb():.2f} GB", flush=True)

    dense = KGEConfig(**{**config.to_dict(), "sparse": False})
    model = build_model(dense, triples)
    optimizer = make_optimizer(model, dense)
    generator = torch.Generator().manual_seed(args.seed)
    batches = triples.stacked()[: dense.batch_size * args.baseline_batches].split(dense.batch_size)
    started = time.perf_counter()
    for batch in batches:
        loss = batch_loss(model, dense, *batch.unbind(1), generator)
        model.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    dense_rate = sum(len(b) for b in batches) / (time.perf_counter() - started)
    print(f"dense baseline    : {dense_rate:,.0f} triples/s over {len(batches)} batches "
          f"(one epoch would take {len(triples) / dense_rate:,.0f} s)")
    print(f"speed-up sparse / dense: {sparse_rate / dense_rate:.1f}x; peak memory {peak_rss_gb():.2f} GB "
          f"(goal: one epoch within 24 GB)")


if __name__ == "__main__":
    main()
