"""The logical schema both backends share; each backend turns it into its own DDL."""

from __future__ import annotations

from kg.errors import InputError
from kg.relations import RELATION_TYPES

CONCEPT = "Concept"
# Property -> LadybugDB type; Neo4j stores the same values schema-free.
CONCEPT_PROPERTIES: dict[str, str] = {
    "id": "STRING",
    "name": "STRING",
    "synonyms": "STRING[]",
    "semantic_types": "STRING[]",
    "group": "STRING",
    "definition": "STRING",
    "sources": "STRING[]",
}
# Concept vectors from `medkg embed export --graph`: a `embedding` property of each Concept on Neo4j,
# rows keyed by the concept id in this node table on LadybugDB.
EMBEDDING_PROPERTY = "embedding"
CONCEPT_EMBEDDING = "ConceptEmbedding"
RELATIONSHIP_TYPES: tuple[str, ...] = RELATION_TYPES
RELATIONSHIP_PROPERTIES: dict[str, str] = {"rel": "STRING", "rela": "STRING", "source": "STRING", "support": "INT64"}
# Reports linked by entity extraction: (:Report)-[:MENTIONS]->(:Concept).
REPORT = "Report"
REPORT_PROPERTIES: dict[str, str] = {"id": "STRING", "source": "STRING"}
MENTIONS = "MENTIONS"
MENTION_PROPERTIES: dict[str, str] = {"assertion": "STRING", "section": "STRING", "count": "INT64"}
MENTION_KEY = ("from", "to", "assertion", "section")
# A relationship is the same relationship when these match; loads merge on them.
RELATIONSHIP_KEY = ("from", "to", "rela", "source")


def check_relationship_types(types: list[str] | None) -> list[str]:
    """Relationship types go into Cypher text (types cannot be parameters), so only known ones pass."""
    if not types:
        return list(RELATIONSHIP_TYPES)
    wanted = [t.upper() for t in types]
    unknown = [t for t in wanted if t not in RELATIONSHIP_TYPES]
    if unknown:
        raise InputError(f"unknown relationship type(s) {', '.join(unknown)}; choose from {', '.join(RELATIONSHIP_TYPES)}")
    return wanted
