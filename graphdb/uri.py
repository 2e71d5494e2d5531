"""Which graph database to open: `--graph URI`, else `$MEDKG_GRAPH`, else the embedded default."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from platformdirs import user_data_dir

from kg.errors import InputError

from .store import GraphStore

NEO4J_SCHEMES = ("bolt://", "bolt+s://", "bolt+ssc://", "neo4j://", "neo4j+s://", "neo4j+ssc://")


def medkg_home() -> Path:
    """Where medkg keeps its data: `$MEDKG_HOME`, else the user's data directory."""
    return Path(os.environ.get("MEDKG_HOME") or user_data_dir("medkg")).expanduser()


def default_graph_uri() -> str:
    return os.environ.get("MEDKG_GRAPH") or f"embedded://{medkg_home() / 'graph'}"


def redacted(uri: str) -> str:
    """The URI without `user:password@`, for messages and logs."""
    parts = urlsplit(uri)
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[-1])) if "@" in parts.netloc else uri


def open_store(uri: str | None = None, read_only: bool = True) -> GraphStore:
    """The store at `uri`. Opened read-only, a graph whose last load did not finish is refused
    (`IncompleteGraphError`) rather than read as if it were whole."""
    store = _open(uri or default_graph_uri(), read_only)
    if read_only:
        try:
            store.check_complete()
        except BaseException:
            store.close()
            raise
    return store


def _open(uri: str, read_only: bool) -> GraphStore:
    scheme = uri.split("://", 1)[0].lower() + "://" if "://" in uri else ""
    if scheme == "embedded://":
        from .embedded import EmbeddedStore

        return EmbeddedStore(uri.split("://", 1)[1], read_only=read_only)
    if scheme in NEO4J_SCHEMES:
        from .neo4j_store import Neo4jStore

        return Neo4jStore.from_environment(scheme + uri.split("://", 1)[1], read_only=read_only)
    raise InputError(f"unknown graph URI {redacted(uri)!r}: use embedded://PATH or a Neo4j URI ({', '.join(NEO4J_SCHEMES)})")
