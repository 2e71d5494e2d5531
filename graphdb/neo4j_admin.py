"""CSV files for `neo4j-admin database import full`, Neo4j's own bulk loader for first loads.

Transactional MERGE loads are right for updates; a UMLS-scale first load of tens of millions
of relationships is what the offline importer is for. Header format: Neo4j Operations
Manual, "Import" (`:ID`, `:LABEL`, `:START_ID`, `:END_ID`, `:TYPE`, `name:type[]` arrays).
"""

from __future__ import annotations

import csv
from pathlib import Path

from kg.atomic import atomic_open
from kg.graph import KnowledgeGraph

from .schema import CONCEPT

ARRAY_DELIMITER = "|"  # RRF values cannot contain it, so no array element is ever split
CONCEPT_HEADER = ["id:ID", "name", "synonyms:string[]", "semantic_types:string[]", "group", "definition", "sources:string[]", ":LABEL"]
RELATIONSHIP_HEADER = [":START_ID", ":END_ID", ":TYPE", "rel", "rela", "source", "support:long"]
NODES_FILE, RELATIONSHIPS_FILE, COMMAND_FILE = "concepts.csv", "relationships.csv", "import-command.txt"


def import_command(database: str = "neo4j") -> str:
    return (f"neo4j-admin database import full --nodes={NODES_FILE} --relationships={RELATIONSHIPS_FILE} "
            f"--array-delimiter='{ARRAY_DELIMITER}' --overwrite-destination {database}")


def _write_csv(path: Path, header: list[str], rows) -> int:
    count = 0
    with atomic_open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for row in rows:
            writer.writerow(row)
            count += 1
    return count


def export_neo4j_admin(kg: KnowledgeGraph, out_dir: Path) -> dict[str, int]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    join = ARRAY_DELIMITER.join
    nodes = _write_csv(out_dir / NODES_FILE, CONCEPT_HEADER, (
        [c.id, c.name, join(c.synonyms), join(c.semantic_types), c.group, c.definition, join(c.sources), CONCEPT]
        for c in kg.concepts()
    ))
    relationships = _write_csv(out_dir / RELATIONSHIPS_FILE, RELATIONSHIP_HEADER, (
        [r.head, r.tail, r.type, r.rel, r.rela, r.source, r.support] for r in kg.relations()
    ))
    (out_dir / COMMAND_FILE).write_text(import_command() + "\n", encoding="utf-8")
    return {"nodes": nodes, "relationships": relationships}
