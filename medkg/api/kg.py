"""`medkg kg ...` as Python: build, load, look up, traverse, query, export."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tqdm import tqdm

from graphdb.neo4j_admin import export_neo4j_admin
from graphdb.store import LoadSummary, Neighbor, PathStep, Similar
from graphdb.uri import open_store
from kg.errors import InputError
from kg.graph import KnowledgeGraph, read_graph
from kg.lookup import Hit
from kg.open_graph import BuildSummary, build_open_graph
from kg.paths import default_data_dir
from kg.problems import ProblemLog
from kg.semgroups import read_semgroups, semgroups_path
from kg.tables import read_tables
from kg.umls import SubsetSummary, UMLSFilter, subset_umls


def build_graph(
    out: Path, source: str = "open", data_dir: Path | None = None, umls_dir: Path | None = None,
    flt: UMLSFilter | None = None, problems: ProblemLog | None = None, progress: bool = True,
) -> BuildSummary | SubsetSummary:
    """Write the four RRF tables of the open radiology graph or of a UMLS subset to `out`."""
    problems = problems if problems is not None else ProblemLog()
    if source == "open":
        return build_open_graph(Path(data_dir or default_data_dir()), out, problems, progress)
    if source == "umls":
        if umls_dir is None:
            raise InputError("a UMLS build needs the UMLS META directory (umls_dir)")
        types = read_semgroups(semgroups_path(data_dir))
        return subset_umls(umls_dir, out, flt or UMLSFilter(), types, problems, progress)
    raise InputError(f"unknown source {source!r}: use 'open' or 'umls'")


def read_kg(rrf_dir: Path, problems: ProblemLog | None = None, data_dir: Path | None = None) -> KnowledgeGraph:
    return read_graph(rrf_dir, problems if problems is not None else ProblemLog(), read_semgroups(semgroups_path(data_dir)))


def load_graph(
    rrf_dir: Path, graph: str | None = None, problems: ProblemLog | None = None, progress: bool = True, data_dir: Path | None = None,
) -> LoadSummary:
    tables = read_tables(rrf_dir, problems if problems is not None else ProblemLog(), read_semgroups(semgroups_path(data_dir)))
    with open_store(graph, read_only=False) as store, tqdm(desc="loading graph", unit=" rows", unit_scale=True, disable=not progress) as bar:
        return store.load(tables, progress=_advance(bar))


def _advance(bar: tqdm):
    """A store's progress callback drawn on `bar`."""
    def update(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)
    return update


def lookup(text: str, limit: int = 10, graph: str | None = None) -> list[Hit]:
    with open_store(graph) as store:
        return store.lookup(text, limit)


def neighbors(concept_id: str, depth: int = 1, rel_types: list[str] | None = None, graph: str | None = None, limit: int = 500) -> list[Neighbor]:
    with open_store(graph) as store:
        return store.neighbors(concept_id, depth, rel_types, limit)


def similar(concept_id: str, limit: int = 10, graph: str | None = None) -> list[Similar]:
    with open_store(graph) as store:
        return store.similar(concept_id, limit)


def path(a: str, b: str, max_depth: int = 6, graph: str | None = None) -> list[PathStep]:
    with open_store(graph) as store:
        return store.path(a, b, max_depth)


def query(cypher: str, params: dict[str, Any] | None = None, write: bool = False, graph: str | None = None,
          allow_files: bool = False) -> list[dict[str, Any]]:
    """Run Cypher; refused when it writes unless `write`, and when it reads or writes files unless `allow_files`."""
    with open_store(graph, read_only=not write) as store:
        return store.query(cypher, params, write=write, allow_files=allow_files)


def counts(graph: str | None = None) -> dict[str, int]:
    with open_store(graph) as store:
        return store.counts()


def export(rrf_dir: Path, out: Path, fmt: str = "neo4j-admin", data_dir: Path | None = None) -> dict[str, int]:
    if fmt != "neo4j-admin":
        raise InputError(f"unknown export format {fmt!r}: only 'neo4j-admin' is supported")
    return export_neo4j_admin(read_kg(rrf_dir, data_dir=data_dir), out)
