"""Bulk-load benchmark for medkg's embedded graph store (LadybugDB).

Why: `medkg kg load` has to ingest a UMLS-sized graph (hundreds of thousands of concepts,
millions of relationships) in minutes, and loading the same graph again must change nothing.
This bench builds a seeded, synthetic UMLS-shaped `KnowledgeGraph` and, in one run:

- loads it with `EmbeddedStore.load` into a fresh store (relationships/s and rows/s);
- loads a random sample of its relationships with a naive one-`CREATE`-per-row Cypher
  loader into another fresh store, as the baseline the bulk loader is measured against;
- loads the graph a second time and checks that the counts do not change;
- times 2-hop queries and `GraphStore.neighbors(depth=2)` on the loaded graph;
- loads a smaller graph of the same shape over Bolt, the Neo4j backend's path (`UNWIND $rows
  ... MERGE` transactions), into a fresh ArcadeDB server (tests/bolt_server.py) per batch size,
  beside the embedded `COPY` load of that same graph as its baseline, and loads it again at
  the default batch size to check that nothing changes.

Run from the repository root:

    .venv/bin/python bench/graph_load.py [--concepts 200000] [--relationships 1000000]
                                         [--naive-sample 20000] [--seed 0]
                                         [--bolt-relationships 100000] [--bolt-batches 1000,5000,10000,20000]

Exits 1 when a load loses rows or the second load changes the counts; the speed goals
are reported, not enforced.
"""

from __future__ import annotations

import _root  # noqa: F401  (first: the repository root on sys.path, for tests.bolt_server)
import argparse
import itertools
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ladybug
import numpy as np

from graphdb.embedded import EmbeddedStore
from graphdb.neo4j_store import BATCH, Neo4jStore, connect
from graphdb.schema import CONCEPT, CONCEPT_PROPERTIES, RELATIONSHIP_PROPERTIES, RELATIONSHIP_TYPES
from kg.graph import Concept, KnowledgeGraph, Relation
from kg.problems import ProblemLog
from kg.tables import GraphTables, read_tables
from kg.write import write_graph_rrf

from tests.bolt_server import HEAP as BOLT_HEAP
from tests.bolt_server import bolt_server

# (TUI, name, semantic group, share of concepts whose first type it is)
SEMANTIC_TYPES = (
    ("T047", "Disease or Syndrome", "DISO", 0.12),
    ("T033", "Finding", "DISO", 0.10),
    ("T191", "Neoplastic Process", "DISO", 0.05),
    ("T046", "Pathologic Function", "DISO", 0.04),
    ("T184", "Sign or Symptom", "DISO", 0.04),
    ("T023", "Body Part, Organ, or Organ Component", "ANAT", 0.08),
    ("T029", "Body Location or Region", "ANAT", 0.04),
    ("T030", "Body Space or Junction", "ANAT", 0.03),
    ("T060", "Diagnostic Procedure", "PROC", 0.08),
    ("T061", "Therapeutic or Preventive Procedure", "PROC", 0.06),
    ("T121", "Pharmacologic Substance", "CHEM", 0.08),
    ("T109", "Organic Chemical", "CHEM", 0.06),
    ("T080", "Qualitative Concept", "CONC", 0.05),
    ("T082", "Spatial Concept", "CONC", 0.04),
    ("T074", "Medical Device", "DEVI", 0.04),
    ("T039", "Physiologic Function", "PHYS", 0.05),
)
# Source vocabulary -> code prefix, for "SAB:CODE" sources.
CODE_PREFIXES = {"MSH": "D", "SNOMEDCT_US": "", "NCI": "C", "RADLEX": "RID", "ICD10CM": "R", "MEDLINEPLUS": "T"}
SYLLABLES = ("car", "dio", "pneu", "mo", "tho", "rax", "pleu", "ral", "hepa", "to", "nephr", "os", "gastr", "en", "ter",
             "col", "derm", "my", "ost", "neur", "angi", "lip", "cyt", "hem", "bron", "chi", "lar", "tra", "che", "ven")
SUFFIXES = ("itis", "osis", "oma", "algia", "ectomy", "plasty", "opathy", "emia", "al", "ic", "ism", "ase")
MODIFIERS = ("acute", "chronic", "left", "right", "bilateral", "primary", "secondary", "congenital", "benign",
             "malignant", "diffuse", "focal", "recurrent", "mild", "severe")

POPULARITY_EXPONENT = 0.8  # Zipf exponent of how often a concept is an endpoint: a few hubs, a long tail
HIERARCHY_SKEW = 2.0  # > 1 pulls parents towards the top of each group's hierarchy, giving broad upper levels


@dataclass(frozen=True)
class RelationshipSpec:
    share: float  # of all relationships
    heads: str | None  # semantic group heads come from; None: any concept
    tails: str | None
    rel: tuple[str, ...]
    rela: tuple[str, ...]
    sources: tuple[str, ...]
    mined: bool = False  # support counted from reports, as for IU X-ray co-occurrences


# IS_A edges form a hierarchy within each semantic group; the others link popular concepts.
SPECS = {
    "IS_A": RelationshipSpec(0.45, None, None, ("CHD",), ("isa",), ("MSH", "SNOMEDCT_US", "RADLEX", "NCI")),
    "RELATED_TO": RelationshipSpec(0.30, None, None, ("RO", "RQ"),
                                   ("", "associated_with", "clinically_associated_with", "has_manifestation", "may_treat"),
                                   ("SNOMEDCT_US", "NCI", "MSH", "MEDLINEPLUS")),
    "LOCATED_AT": RelationshipSpec(0.10, "DISO", "ANAT", ("RO",), ("located_at",), ("SNOMEDCT_US", "MEDKG")),
    "CO_OCCURS_WITH": RelationshipSpec(0.08, "DISO", "DISO", ("RO",), ("co_occurs_with",), ("IUXRAY",), mined=True),
    "HAS_MODIFIER": RelationshipSpec(0.07, "DISO", "CONC", ("RO",), ("has_modifier",), ("IUXRAY",), mined=True),
}
assert set(SPECS) == set(RELATIONSHIP_TYPES), "bench SPECS must cover exactly graphdb.schema.RELATIONSHIP_TYPES"

TWO_HOP = f"MATCH (c:{CONCEPT} {{id: $id}})-[*1..2]-(n:{CONCEPT}) WHERE n.id <> $id RETURN count(DISTINCT n) AS n"


# ---- synthetic graph ------------------------------------------------------------------------

def _words(rng: np.random.Generator, n: int) -> list[str]:
    """Pseudo-medical words: two or three syllables and a suffix."""
    syllables = rng.integers(0, len(SYLLABLES), (n, 3))
    three = rng.random(n) < 0.4
    suffixes = rng.integers(0, len(SUFFIXES), n)
    return [
        SYLLABLES[s[0]] + SYLLABLES[s[1]] + (SYLLABLES[s[2]] if t else "") + SUFFIXES[x]
        for s, t, x in zip(syllables.tolist(), three.tolist(), suffixes.tolist())
    ]


def synthetic_concepts(rng: np.random.Generator, n: int) -> tuple[list[Concept], np.ndarray]:
    """`n` concepts C0000001... with names, synonyms, 1-2 TUIs, group, some definitions, 1-3 sources; and their groups."""
    words = _words(rng, n)
    modifiers = rng.integers(0, len(MODIFIERS), (n, 2)).tolist()
    named_with_modifier = (rng.random(n) < 0.6).tolist()
    synonym_counts = np.minimum(rng.poisson(2.0, n), 6).tolist()
    synonym_forms = rng.integers(0, 4, (n, 6)).tolist()
    shares = np.array([s for *_, s in SEMANTIC_TYPES])
    tuis = rng.choice(len(SEMANTIC_TYPES), (n, 2), p=shares / shares.sum()).tolist()
    two_types = (rng.random(n) < 0.15).tolist()
    defined = (rng.random(n) < 0.3).tolist()
    sabs = list(CODE_PREFIXES)
    sab_order = rng.random((n, len(sabs))).argsort(axis=1)[:, :3].tolist()
    sab_counts = rng.integers(1, 4, n).tolist()
    codes = rng.integers(1_000, 1_000_000, (n, 3)).tolist()

    concepts = []
    for i in range(n):
        word, (m1, m2) = words[i], modifiers[i]
        name = f"{MODIFIERS[m1]} {word}" if named_with_modifier[i] else word
        forms = (f"{word}, {MODIFIERS[m1]}", f"{name} (finding)", f"{word} NOS", f"{MODIFIERS[m2]} {word}")
        synonyms = [s for s in dict.fromkeys(forms[f] for f in synonym_forms[i][: synonym_counts[i]]) if s != name]
        first, second = tuis[i]
        types = [SEMANTIC_TYPES[first][0]] + ([SEMANTIC_TYPES[second][0]] if two_types[i] and second != first else [])
        type_name = SEMANTIC_TYPES[first][1].lower()
        definition = f"{MODIFIERS[m2].capitalize()} {type_name} involving the {words[i - 1]}." if defined[i] else ""
        sources = [f"{sabs[s]}:{CODE_PREFIXES[sabs[s]]}{c}" for s, c in zip(sab_order[i][: sab_counts[i]], codes[i])]
        concepts.append(Concept(f"C{i + 1:07d}", name, synonyms, types, SEMANTIC_TYPES[first][2], definition, sources))
    groups = np.array([c.group for c in concepts])
    return concepts, groups


def _popular(rng: np.random.Generator, popularity: np.ndarray, members: np.ndarray, size: int) -> np.ndarray:
    """`size` draws from `members`, each in proportion to its popularity."""
    weights = popularity[members]
    return members[rng.choice(len(members), size, p=weights / weights.sum())]


def _hierarchy_edges(rng: np.random.Generator, groups: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(child, parent) pairs; a parent always comes earlier in its group, so IS_A stays acyclic."""
    order = np.argsort(groups, kind="stable")
    sorted_groups = groups[order]
    group_start = np.searchsorted(sorted_groups, sorted_groups, side="left")
    position = np.arange(len(groups)) - group_start
    children = rng.choice(np.flatnonzero(position > 0), size)
    parents = group_start[children] + (position[children] * rng.random(size) ** HIERARCHY_SKEW).astype(np.int64)
    return order[children], order[parents]


def _edge_drawer(rng: np.random.Generator, spec: RelationshipSpec, is_a: bool, groups: np.ndarray,
                 popularity: np.ndarray) -> Callable[[int], dict[str, np.ndarray]]:
    """A function drawing `size` candidate edges as columns of concept indices and vocabulary codes."""
    everyone = np.arange(len(groups))
    heads = everyone if spec.heads is None else np.flatnonzero(groups == spec.heads)
    tails = everyone if spec.tails is None else np.flatnonzero(groups == spec.tails)

    def draw(size: int) -> dict[str, np.ndarray]:
        if is_a:
            head, tail = _hierarchy_edges(rng, groups, size)
        else:
            head, tail = _popular(rng, popularity, heads, size), _popular(rng, popularity, tails, size)
        return {
            "head": head,
            "tail": tail,
            "rel": rng.integers(0, len(spec.rel), size),
            "rela": rng.integers(0, len(spec.rela), size),
            "source": rng.integers(0, len(spec.sources), size),
            "support": rng.geometric(0.2, size) if spec.mined else np.zeros(size, np.int64),
        }

    return draw


def _distinct_edges(draw: Callable[[int], dict[str, np.ndarray]], quota: int, n_concepts: int) -> dict[str, np.ndarray]:
    """Draw until there are `quota` distinct (head, tail, rela, source) edges without self-loops, in draw order."""
    edges = draw(quota)
    found = 0
    while True:
        edges = {k: v[edges["head"] != edges["tail"]] for k, v in edges.items()}
        dims = (n_concepts, n_concepts, int(edges["rela"].max(initial=0)) + 1, int(edges["source"].max(initial=0)) + 1)
        key = np.ravel_multi_index((edges["head"], edges["tail"], edges["rela"], edges["source"]), dims)
        first = np.sort(np.unique(key, return_index=True)[1])
        edges = {k: v[first] for k, v in edges.items()}
        if len(first) >= quota:
            return {k: v[:quota] for k, v in edges.items()}
        if len(first) == found:
            raise SystemExit(f"cannot draw {quota:,} distinct edges among {n_concepts:,} concepts; use more --concepts")
        found = len(first)
        more = draw(2 * (quota - found) + 1_000)
        edges = {k: np.concatenate([edges[k], more[k]]) for k in edges}


def synthetic_graph(seed: int, n_concepts: int, n_relationships: int) -> KnowledgeGraph:
    """A UMLS-shaped graph, the same for the same arguments."""
    rng = np.random.default_rng(seed)
    concepts, groups = synthetic_concepts(rng, n_concepts)
    kg = KnowledgeGraph()
    for concept in concepts:
        kg.add_concept(concept)
    ids = [c.id for c in concepts]
    popularity = (rng.permutation(n_concepts) + 1.0) ** -POPULARITY_EXPONENT
    quotas = {t: round(n_relationships * spec.share) for t, spec in SPECS.items()}
    quotas["IS_A"] += n_relationships - sum(quotas.values())
    for rel_type, spec in SPECS.items():
        draw = _edge_drawer(rng, spec, rel_type == "IS_A", groups, popularity)
        edges = _distinct_edges(draw, quotas[rel_type], n_concepts)
        columns = (edges[k].tolist() for k in ("head", "tail", "rel", "rela", "source", "support"))
        for head, tail, rel, rela, source, support in zip(*columns):
            relation = Relation(ids[head], rel_type, ids[tail], spec.rel[rel], spec.rela[rela], spec.sources[source], support)
            kg.add_relation(relation)
    return kg


def graph_counts(kg: KnowledgeGraph) -> dict[str, int]:
    """What a store holding exactly this graph reports from `GraphStore.counts`."""
    by_type = Counter(t for _, _, t in kg.graph.edges(data="type"))
    return {"Concept": kg.num_concepts, **{t: by_type[t] for t in RELATIONSHIP_TYPES}}


# ---- measurements ---------------------------------------------------------------------------

def timed(action: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    result = action()
    return result, time.perf_counter() - start


def latencies_ms(action: Callable[[str], Any], ids: list[str], warmup: list[str]) -> tuple[list[float], list[Any]]:
    """Milliseconds per call over `ids` after untimed calls on `warmup`; and the results."""
    for concept_id in warmup:
        action(concept_id)
    times, results = [], []
    for concept_id in ids:
        result, seconds = timed(lambda: action(concept_id))
        times.append(seconds * 1000)
        results.append(result)
    return times, results


NAIVE_CONCEPT = f"CREATE (c:{CONCEPT} {{{', '.join(f'`{p}`: $v_{p}' for p in CONCEPT_PROPERTIES)}}})"


def naive_relationship_cypher(rel_type: str) -> str:
    props = ", ".join(f"{p}: ${p}" for p in RELATIONSHIP_PROPERTIES)
    return f"MATCH (a:{CONCEPT} {{id: $a}}), (b:{CONCEPT} {{id: $b}}) CREATE (a)-[:{rel_type} {{{props}}}]->(b)"


def naive_load(store: EmbeddedStore, kg: KnowledgeGraph, sample: list[Relation]) -> tuple[int, float, float]:
    """Load `sample` and its endpoints one statement per row: (concepts, concept seconds, relationship seconds)."""
    store.ensure_schema()
    endpoints = sorted({r.head for r in sample} | {r.tail for r in sample})

    def create_concepts() -> None:
        for concept_id in endpoints:
            concept = kg.concept(concept_id)
            store.query(NAIVE_CONCEPT, {f"v_{p}": getattr(concept, p) for p in CONCEPT_PROPERTIES}, write=True)

    def create_relationships() -> None:
        statements = {t: naive_relationship_cypher(t) for t in RELATIONSHIP_TYPES}
        for r in sample:
            params = {"a": r.head, "b": r.tail, **{p: getattr(r, p) for p in RELATIONSHIP_PROPERTIES}}
            store.query(statements[r.type], params, write=True)

    _, concept_seconds = timed(create_concepts)
    _, relationship_seconds = timed(create_relationships)
    return len(endpoints), concept_seconds, relationship_seconds


def relationship_sample(rng: np.random.Generator, kg: KnowledgeGraph, size: int) -> list[Relation]:
    chosen = np.zeros(kg.num_relations, bool)
    chosen[rng.choice(kg.num_relations, min(size, kg.num_relations), replace=False)] = True
    return list(itertools.compress(kg.relations(), chosen.tolist()))


# ---- the Bolt load path ---------------------------------------------------------------------

@dataclass
class BoltRun:
    batch_size: int
    seconds: float
    counts_ok: bool
    reload_seconds: float | None = None  # the second load, at the default batch size only
    reload_unchanged: bool | None = None


def bolt_load(tables: GraphTables, expected: dict[str, int], batch_size: int, root: Path, reload: bool) -> tuple[BoltRun, str]:
    """Load `tables` over Bolt into a fresh server (a cold JVM for every batch size alike); and the server's agent."""
    with bolt_server(root) as server, Neo4jStore(connect(server.uri, server.user, server.password), server.uri, read_only=False) as store:
        agent = store._driver.get_server_info().agent
        store.batch_size = batch_size
        _, seconds = timed(lambda: store.load(tables, progress=False))
        counts = store.counts()
        run = BoltRun(batch_size, seconds, counts == expected)
        if reload:
            summary, run.reload_seconds = timed(lambda: store.load(tables, progress=False))
            run.reload_unchanged = store.counts() == counts and all(t.added == t.updated == 0 for t in summary.tables.values())
    return run, agent


def bolt_bench(args: argparse.Namespace) -> list[str]:
    """The Bolt loads beside the embedded load of the same graph; returns failures."""
    kg = synthetic_graph(args.seed, args.bolt_relationships // 5, args.bolt_relationships)
    expected, tables = graph_counts(kg), kg.to_tables()
    n_rels = kg.num_relations
    runs, agent = [], ""
    with tempfile.TemporaryDirectory(prefix="medkg-bench-bolt-") as tmp:
        with EmbeddedStore(Path(tmp) / "baseline", read_only=False) as store:
            _, embedded_s = timed(lambda: store.load(tables, progress=False))
        for batch_size in args.bolt_batches:
            run, agent = bolt_load(tables, expected, batch_size, Path(tmp) / f"bolt-{batch_size}", reload=batch_size == BATCH)
            runs.append(run)
            print(f"Bolt load, batches of {batch_size:,}: {run.seconds:.1f} s = {n_rels / run.seconds:,.0f} rels/s", flush=True)
    best = min(runs, key=lambda r: r.seconds)
    default = next((r for r in runs if r.reload_seconds is not None), None)
    print(
        f"\nBolt server      : {agent} (arcadedb-embedded), JVM heap {BOLT_HEAP}; load average {os.getloadavg()[0]:.1f}\n"
        f"graph            : {kg.num_concepts:,} concepts, {n_rels:,} relationships (same generator, seed {args.seed})\n"
        f"embedded COPY    : {embedded_s:.1f} s = {n_rels / embedded_s:,.0f} rels/s (baseline, same graph)\n"
        + "".join(f"Bolt UNWIND MERGE: batches of {r.batch_size:>6,}: {r.seconds:6.1f} s = {n_rels / r.seconds:7,.0f} rels/s"
                  f"  (embedded is {r.seconds / embedded_s:,.0f}x faster)\n" for r in runs)
        + f"best batch size  : {best.batch_size:,} (medkg's default: {BATCH:,})"
        + (f"\nBolt second load : {default.reload_seconds:.1f} s, counts unchanged: {default.reload_unchanged}" if default else "")
    )
    failures = [f"Bolt load with batches of {r.batch_size:,} stored other counts than {expected}" for r in runs if not r.counts_ok]
    if default and not default.reload_unchanged:
        failures.append("the second Bolt load changed the graph")
    return failures


# ---- the run --------------------------------------------------------------------------------

def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concepts", type=int, default=200_000)
    parser.add_argument("--relationships", type=int, default=1_000_000)
    parser.add_argument("--naive-sample", type=int, default=20_000, help="relationships the naive per-row loader inserts")
    parser.add_argument("--queries", type=int, default=200, help="timed 2-hop queries")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bolt-relationships", type=int, default=100_000,
                        help="relationships of the graph loaded over Bolt (concepts: a fifth of that); 0 skips the Bolt loads")
    parser.add_argument("--bolt-batches", type=lambda text: [int(b) for b in text.split(",")], default=[1_000, 5_000, 10_000, 20_000],
                        help="comma-separated rows per UNWIND transaction to measure")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    kg, generate_s = timed(lambda: synthetic_graph(args.seed, args.concepts, args.relationships))
    expected = graph_counts(kg)
    n_rels = kg.num_relations
    print(f"generated {kg.num_concepts:,} concepts, {n_rels:,} relationships in {generate_s:.1f} s: {expected}", flush=True)
    rng = np.random.default_rng(args.seed + 1)
    ids = list(kg.graph.nodes)
    query_ids = [ids[i] for i in rng.choice(len(ids), args.queries + 5, replace=False)]
    warmup, query_ids = query_ids[:5], query_ids[5:]
    sample = relationship_sample(rng, kg, args.naive_sample)

    with tempfile.TemporaryDirectory(prefix="medkg-bench-") as tmp:
        rrf_dir = Path(tmp) / "rrf"
        _, write_s = timed(lambda: write_graph_rrf(kg, rrf_dir))
        print(f"wrote the graph as RRF in {write_s:.1f} s (not part of any rate)", flush=True)

        def load_rrf(store: EmbeddedStore):
            """What `medkg kg load DIR` does: RRF -> Arrow tables -> the store."""
            return store.load(read_tables(rrf_dir, ProblemLog()), progress=False)

        with EmbeddedStore(Path(tmp) / "medkg", read_only=False) as store:
            summary, load_s = timed(lambda: load_rrf(store))
            print(f"first load from RRF, {load_s:.1f} s:\n{summary}", flush=True)
            relationship_s = summary.relationship_seconds
            first_counts = store.counts()
            summary, reload_s = timed(lambda: load_rrf(store))
            print(f"second load, {reload_s:.1f} s:\n{summary}", flush=True)
            second_counts = store.counts()
            two_hop_ms, sizes = latencies_ms(lambda i: store.query(TWO_HOP, {"id": i})[0]["n"], query_ids, warmup)
            neighbors_ms, _ = latencies_ms(lambda i: store.neighbors(i, depth=2), query_ids, warmup)
        with EmbeddedStore(Path(tmp) / "in-memory", read_only=False) as store:
            summary, memory_s = timed(lambda: store.load(kg, progress=False))
            print(f"load of the in-memory networkx graph, {memory_s:.1f} s (graph to column tables {summary.prepare_seconds:.1f} s)", flush=True)
        with EmbeddedStore(Path(tmp) / "naive", read_only=False) as store:
            naive_concepts, naive_concept_s, naive_s = naive_load(store, kg, sample)
            naive_counts = store.counts()

    loaded_all = first_counts == expected
    unchanged = second_counts == first_counts
    naive_ok = sum(naive_counts.values()) - naive_counts["Concept"] == len(sample)
    medkg_rate = n_rels / load_s
    naive_rate = len(sample) / naive_s
    print(
        "\n"
        f"machine: {os.cpu_count()} CPUs, ladybug {ladybug.__version__}\n"
        f"graph: {kg.num_concepts:,} concepts, {n_rels:,} relationships (generated in {generate_s:.1f} s)\n"
        f"medkg loader     : {n_rels:,} rels in {load_s:.1f} s, RRF files to database (`medkg kg load`) = {medkg_rate:,.0f} rels/s"
        f"  (concepts+rels: {(kg.num_concepts + n_rels) / load_s:,.0f} rows/s)\n"
        f"  relationships  : {relationship_s:.1f} s diffing and writing the relationship tables = {n_rels / relationship_s:,.0f} rels/s\n"
        f"  from networkx  : {memory_s:.1f} s = {n_rels / memory_s:,.0f} rels/s (loading the in-memory KnowledgeGraph instead)\n"
        f"naive per-row    : {len(sample):,} rels in {naive_s:.1f} s = {naive_rate:,.0f} rels/s"
        f"  (after {naive_concepts:,} endpoint concepts in {naive_concept_s:.1f} s"
        f" = {naive_concepts / naive_concept_s:,.0f} rows/s)\n"
        f"ratio            : {medkg_rate / naive_rate:,.0f}x   (goal: >= 300k rels/s and >= 50x)\n"
        f"second load      : {reload_s:.1f} s, counts unchanged: {unchanged}\n"
        f"2-hop query      : median {np.median(two_hop_ms):.1f} ms, p95 {np.percentile(two_hop_ms, 95):.1f} ms"
        f" ({len(two_hop_ms)} queries, median {np.median(sizes):,.0f} concepts reached);"
        f" neighbors(depth=2) median {np.median(neighbors_ms):.1f} ms",
        flush=True,
    )
    bolt_failures = bolt_bench(args) if args.bolt_relationships else []
    failures = [
        message for ok, message in (
            (loaded_all, f"first load stored {first_counts}, expected {expected}"),
            (unchanged, f"second load changed counts from {first_counts} to {second_counts}"),
            (naive_ok, f"naive loader stored {naive_counts} for {len(sample):,} relationships"),
        ) if not ok
    ] + bolt_failures
    for message in failures:
        print(f"FAIL: {message}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
