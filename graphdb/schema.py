"""The logical schema both backends share, in Arrow types (the form every load passes through);
each backend turns it into its own dialect: LadybugDB DDL in `embedded`, Cypher MERGE in `neo4j_store`."""

from __future__ import annotations

import pyarrow as pa

from kg.errors import InputError
from kg.relations import RELATION_TYPES

STRING, STRINGS, INTEGER = pa.string(), pa.list_(pa.string()), pa.int64()

CONCEPT = "Concept"
CONCEPT_PROPERTIES: dict[str, pa.DataType] = {
    "id": STRING,
    "name": STRING,
    "synonyms": STRINGS,
    "semantic_types": STRINGS,
    "group": STRING,
    "definition": STRING,
    "sources": STRINGS,
}
# Concept vectors from `embed export`: a `embedding` property of each Concept on Neo4j,
# rows keyed by the concept id in this node table on LadybugDB.
EMBEDDING_PROPERTY = "embedding"
CONCEPT_EMBEDDING = "ConceptEmbedding"
RELATIONSHIP_TYPES: tuple[str, ...] = RELATION_TYPES
RELATIONSHIP_PROPERTIES: dict[str, pa.DataType] = {"rel": STRING, "rela": STRING, "source": STRING, "support": INTEGER}
# Reports linked by entity extraction: (:Report)-[:MENTIONS]->(:Concept).
REPORT = "Report"
REPORT_PROPERTIES: dict[str, pa.DataType] = {"id": STRING, "source": STRING}
MENTIONS = "MENTIONS"
MENTION_PROPERTIES: dict[str, pa.DataType] = {"assertion": STRING, "section": STRING, "count": INTEGER}
MENTION_KEY = ("from", "to", "assertion", "section")
# A relationship is the same relationship when these match; loads merge on them.
RELATIONSHIP_KEY = ("from", "to", "rela", "source")
# One record of the graph's last load: `state` is "running" from the load's start until its last table
# is written, then "complete", so a load that was killed (or is still going) is never taken for the graph.
LOAD_RECORD = "MedkgLoad"
LOAD_PROPERTIES: dict[str, pa.DataType] = {"id": STRING, "state": STRING, "started": STRING, "finished": STRING}
LOAD_RECORD_ID = "graph"


def check_relationship_types(types: list[str] | None) -> list[str]:
    """Relationship types go into Cypher text (types cannot be parameters), so only known ones pass."""
    if not types:
        return list(RELATIONSHIP_TYPES)
    wanted = [t.upper() for t in types]
    unknown = [t for t in wanted if t not in RELATIONSHIP_TYPES]
    if unknown:
        raise InputError(f"unknown relationship type(s) {', '.join(unknown)}; choose from {', '.join(RELATIONSHIP_TYPES)}")
    return wanted
