"""Shared test fixtures: where the real data lives (`../shared/data`, or `$MEDKG_DATA_DIR`)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

DATA_DIR = Path(os.environ.get("MEDKG_DATA_DIR") or Path(__file__).resolve().parents[1].parent / "shared" / "data")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real data folder; a missing one fails the test rather than skipping it."""
    assert DATA_DIR.is_dir(), f"real data folder not found: {DATA_DIR} (set MEDKG_DATA_DIR)"
    return DATA_DIR


@pytest.fixture(scope="session")
def open_kg_dir(data_dir, tmp_path_factory) -> Path:
    """The open radiology graph built once per test session, as RRF."""
    from kg.open_graph import build_open_graph
    from kg.problems import ProblemLog

    out = tmp_path_factory.mktemp("open") / "open-kg"
    build_open_graph(data_dir, out, ProblemLog(), progress=False)
    return out


@pytest.fixture(scope="session")
def open_kg(open_kg_dir, data_dir):
    from kg.graph import read_graph
    from kg.problems import ProblemLog
    from kg.semgroups import read_semgroups

    return read_graph(open_kg_dir, ProblemLog(), read_semgroups(data_dir / "vocab" / "umls" / "SemGroups.txt"))


@pytest.fixture(scope="session")
def open_graph_uri(open_kg, tmp_path_factory) -> str:
    """An embedded database holding the open graph, loaded once per session."""
    from graphdb.embedded import EmbeddedStore

    path = tmp_path_factory.mktemp("db") / "graph"
    with EmbeddedStore(path, read_only=False) as store:
        store.load(open_kg, progress=False)
    return f"embedded://{path}"


@pytest.fixture(scope="session")
def medkg_home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("medkg-home")


@pytest.fixture(scope="session")
def concept_index(open_kg_dir, medkg_home, data_dir):
    """The extraction index of the open graph, built once per session."""
    from extract.index import ensure_index
    from kg.semgroups import read_semgroups

    index, _ = ensure_index(open_kg_dir, medkg_home, read_semgroups(data_dir / "vocab" / "umls" / "SemGroups.txt"), progress=False)
    return index


@pytest.fixture(scope="session")
def linked_home(concept_index, medkg_home, tmp_path_factory) -> Callable[..., Path]:
    """`linked_home(name)`: a new $MEDKG_HOME whose alignment cache links the session's concept index of the open
    graph rather than building it again (training, evaluation and explanation look in $MEDKG_HOME/alignment);
    `extraction=True` links it where `medkg extract` looks too ($MEDKG_HOME/extract-index)."""
    def make(name: str, extraction: bool = False) -> Path:
        home = tmp_path_factory.mktemp(name)
        (home / "alignment").mkdir()
        for base in (home / "alignment", *((home,) if extraction else ())):
            (base / "extract-index").symlink_to(medkg_home / "extract-index", target_is_directory=True)
        return home
    return make


@pytest.fixture(scope="session")
def extractor(concept_index, data_dir):
    from extract.pipeline import ExtractionConfig, Extractor

    return Extractor(ExtractionConfig(concept_index.directory, data_dir / "lexicons"), concept_index)


@pytest.fixture(scope="session")
def bolt_environment(tmp_path_factory) -> Iterator[dict[str, str]]:
    """NEO4J_URI / NEO4J_USER / NEO4J_PASSWORD of a live Bolt server for the Neo4j backend.

    The server $NEO4J_URI names when it is set (a scratch database: the live suite deletes
    `T:` nodes and replaces stored concept vectors); otherwise an ArcadeDB server started
    here in a child process on free loopback ports, stopped by its process id at the end."""
    if os.environ.get("NEO4J_URI"):
        yield {k: os.environ[k] for k in ("NEO4J_URI", "NEO4J_USER", "NEO4J_PASSWORD") if k in os.environ}
        return
    from tests.bolt_server import bolt_server

    with bolt_server(tmp_path_factory.mktemp("bolt")) as server:
        yield server.environment()
