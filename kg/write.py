"""A `KnowledgeGraph` written as RRF that `kg.graph.read_graph` reads back: graphs built in Python
(synthetic benchmarks, tests, notebooks) become `--kg DIR` input. Each concept's strings are written
under its first source."""

from __future__ import annotations

from pathlib import Path

from .graph import KnowledgeGraph
from .relations import rrf_from_edge
from .rrf import MRDEF, MRSTY, RRFWriter, atom


def write_graph_rrf(kg: KnowledgeGraph, out: Path) -> None:
    """The graph as the RRF files `medkg kg build` writes (a graph built in Python, readable by every
    `--kg DIR` command); written to a sibling directory and swapped in, like every build."""
    with RRFWriter(out) as writer:
        for c in kg.concepts():
            sab, _, code = (c.sources[0] if c.sources else "MEDKG:" + c.id).partition(":")
            for i, string in enumerate([c.name, *c.synonyms]):
                writer.write(atom(c.id, string, i == 0, sab, "PT" if i == 0 else "SY", code))
            for tui in c.semantic_types:
                writer.write(MRSTY(c.id, tui, "", "", "", ""))
            if c.definition:
                writer.write(MRDEF(c.id, "", "", "", sab, c.definition, "N", ""))
        for number, r in enumerate(kg.relations()):
            cui1, rel, cui2, rela = rrf_from_edge(r.head, r.type, r.tail, r.rela)
            writer.write_relation(cui1, rel, cui2, rela, f"R{number}", r.source, r.support)
        writer.commit()
