"""An RRF directory as two Arrow tables, concepts and relations, read in C++ and never row by row.

This is the one place that decides what RRF rows mean as a graph; `read_graph` builds
networkx from these tables, and database loads copy them straight in, so a UMLS-sized
graph never has to exist as Python objects to be loaded.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from .problems import MalformedInputError, ProblemLog
from .relations import HIERARCHY_NARROWER_IS_CUI2, INVERSE_RELA, RELA_TYPES
from .rrf import MRCONSO, MRDEF, MRREL, MRSAT, MRSTY, PREFERRED_ATOM, SUPPORT_ATTRIBUTE, read_table, require_tables, table_path
from .semgroups import SemanticType

STRINGS = pa.list_(pa.string())
CONCEPT_SCHEMA = pa.schema([
    ("id", pa.string()), ("name", pa.string()), ("synonyms", STRINGS), ("semantic_types", STRINGS),
    ("group", pa.string()), ("definition", pa.string()), ("sources", STRINGS),
])  # fmt: skip
RELATION_SCHEMA = pa.schema([
    ("head", pa.string()), ("tail", pa.string()), ("type", pa.string()), ("rel", pa.string()),
    ("rela", pa.string()), ("source", pa.string()), ("support", pa.int64()),
])  # fmt: skip


@dataclass
class GraphTables:
    concepts: pa.Table  # CONCEPT_SCHEMA
    relations: pa.Table  # RELATION_SCHEMA; one row per (head, type, tail, rela, source)


def is_a_edges(tables: GraphTables, upward: bool = False) -> dict[str, list[str]]:
    """IS_A as adjacency lists: parent -> children, or with `upward` child -> parents."""
    is_a = tables.relations.filter(pc.equal(tables.relations["type"], "IS_A"))
    heads, tails = is_a["head"].to_pylist(), is_a["tail"].to_pylist()
    edges: dict[str, list[str]] = {}
    for child, parent in zip(heads, tails):
        if upward:
            edges.setdefault(child, []).append(parent)
        else:
            edges.setdefault(parent, []).append(child)
    return edges


def reachable(start: str, edges: dict[str, list[str]]) -> set[str]:
    """`start` and every concept reachable from it along `edges` (cycles are harmless)."""
    found, stack = {start}, [start]
    while stack:
        for neighbour in edges.get(stack.pop(), ()):
            if neighbour not in found:
                found.add(neighbour)
                stack.append(neighbour)
    return found


def read_rrf(path: Path, row_type: type[NamedTuple], columns: list[str], problems: ProblemLog) -> pa.Table:
    """`columns` of one RRF file plus its `line` numbers.

    A clean file is parsed by Arrow's multi-threaded CSV reader; a file with any malformed
    line goes through the streaming reader instead, which reports each bad line by number.
    """
    names = [*row_type._fields, "_end"]  # the trailing `|` makes one empty last column
    clean = True

    def invalid(_row: pcsv.InvalidRow) -> str:
        nonlocal clean
        clean = False
        return "skip"

    try:
        table = pcsv.read_csv(
            path,
            read_options=pcsv.ReadOptions(column_names=names),
            parse_options=pcsv.ParseOptions(delimiter="|", quote_char=False, escape_char=False, invalid_row_handler=invalid, ignore_empty_lines=False),
            convert_options=pcsv.ConvertOptions(column_types=dict.fromkeys(names, pa.string()), strings_can_be_null=False, include_columns=columns),
        )
    except pa.ArrowInvalid:  # invalid UTF-8 anywhere fails the whole parse
        clean = False
    if clean:
        return table.append_column("line", pa.array(range(1, table.num_rows + 1), pa.int64()))
    rows = list(read_table(path, row_type, problems))
    data = {c: pa.array([getattr(row, c) for _, row in rows], pa.string()) for c in columns}
    return pa.table({**data, "line": pa.array([number for number, _ in rows], pa.int64())})


def read_tables(rrf_dir: Path, problems: ProblemLog, semantic_types: dict[str, SemanticType] | None = None) -> GraphTables:
    rrf_dir = Path(rrf_dir)
    require_tables(rrf_dir)
    concepts = _concepts(rrf_dir, problems, semantic_types or {})
    relations = _relations(rrf_dir, problems, concepts.column("id"))
    return GraphTables(concepts, relations)


def _lists(table: pa.Table, key: str, value: str, order: list[str]) -> pa.Table:
    """`key` -> list of distinct `value`s, each at its first position by `order`."""
    first = table.group_by([key, value]).aggregate([(c, "min") for c in order])  # order-free: threads are fine
    first = first.sort_by([(key, "ascending"), *((f"{c}_min", "ascending") for c in order)])
    return first.group_by(key, use_threads=False).aggregate([(value, "list")])


def _per_concept(ids: pa.Array, keys: pa.ChunkedArray, values: pa.ChunkedArray) -> pa.Array:
    """`values` aligned to `ids` (null where a concept has none)."""
    return pc.take(values, pc.index_in(ids, value_set=keys))


def _concepts(rrf_dir: Path, problems: ProblemLog, semantic_types: dict[str, SemanticType]) -> pa.Table:
    path = table_path(rrf_dir, "MRCONSO")
    atoms = read_rrf(path, MRCONSO, ["CUI", "TS", "STT", "ISPREF", "SAB", "CODE", "STR"], problems)
    if atoms.num_rows == 0:
        raise MalformedInputError(f"{path}: no concepts could be read")
    preferred = functools.reduce(pc.and_, (pc.equal(atoms[field], value) for field, value in PREFERRED_ATOM.items()))
    atoms = atoms.append_column("rank", pc.if_else(preferred, 0, 1)).append_column(
        "code", pc.binary_join_element_wise(atoms["SAB"], atoms["CODE"], ":"))
    # The preferred atom first, then file order: a concept's name is its first string.
    strings = _lists(atoms, "CUI", "STR", ["rank", "line"])
    codes = _lists(atoms, "CUI", "code", ["line"])
    ids = strings["CUI"].combine_chunks()
    names = pc.list_element(strings["STR_list"], 0)
    synonyms = pc.list_slice(strings["STR_list"], 1)

    sty = read_rrf(table_path(rrf_dir, "MRSTY"), MRSTY, ["CUI", "TUI"], problems)
    sty = sty.group_by("CUI", use_threads=False).aggregate([("TUI", "list"), ("TUI", "first")])
    types = pc.fill_null(_per_concept(ids, sty["CUI"], sty["TUI_list"]), pa.scalar([], STRINGS))
    first_type = _per_concept(ids, sty["CUI"], sty["TUI_first"])
    known = pa.array(list(semantic_types), pa.string())
    group_of = pa.array([t.group for t in semantic_types.values()], pa.string())
    groups = pc.fill_null(pc.take(group_of, pc.index_in(first_type, value_set=known)), "")
    definitions = read_rrf(table_path(rrf_dir, "MRDEF"), MRDEF, ["CUI", "DEF"], problems)
    definitions = definitions.group_by("CUI", use_threads=False).aggregate([("DEF", "first")])
    definition = pc.fill_null(_per_concept(ids, definitions["CUI"], definitions["DEF_first"]), "")
    sources = _per_concept(ids, codes["CUI"], codes["code_list"])
    return pa.Table.from_arrays([ids, names, synonyms, types, groups, definition, sources], schema=CONCEPT_SCHEMA)


def _relations(rrf_dir: Path, problems: ProblemLog, concept_ids: pa.ChunkedArray) -> pa.Table:
    path = table_path(rrf_dir, "MRREL")
    rows = read_rrf(path, MRREL, ["CUI1", "REL", "CUI2", "RELA", "RUI", "SAB"], problems)
    rel, rela = rows["REL"], rows["RELA"]
    hierarchy = pc.is_in(rel, value_set=pa.array(list(HIERARCHY_NARROWER_IS_CUI2)))
    cui2_first = pc.or_(pc.invert(hierarchy), pc.is_in(rel, value_set=pa.array([r for r, v in HIERARCHY_NARROWER_IS_CUI2.items() if v])))
    head = pc.if_else(cui2_first, rows["CUI2"], rows["CUI1"])
    tail = pc.if_else(cui2_first, rows["CUI1"], rows["CUI2"])
    rela = pc.if_else(pc.and_(hierarchy, pc.equal(rela, "inverse_isa")), INVERSE_RELA["inverse_isa"], rela)
    mapped = pc.take(pa.array(list(RELA_TYPES.values())), pc.index_in(rela, value_set=pa.array(list(RELA_TYPES))))
    rtype = pc.if_else(hierarchy, "IS_A", pc.fill_null(mapped, "RELATED_TO"))
    support = _support(rrf_dir, problems)
    counts = pc.take(support["count"], pc.index_in(rows["RUI"], value_set=support["RUI"])) if support.num_rows else None
    relations = pa.table({
        "head": head, "tail": tail, "type": rtype, "rel": rel, "rela": rela, "source": rows["SAB"],
        "support": pc.fill_null(counts, 0) if counts is not None else pa.array([0] * rows.num_rows, pa.int64()),
        "line": rows["line"],
    })  # fmt: skip
    ids = concept_ids.combine_chunks()
    head_known, tail_known = pc.is_in(relations["head"], value_set=ids), pc.is_in(relations["tail"], value_set=ids)
    known = pc.and_(head_known, tail_known)
    dangling = relations.append_column("head_known", head_known).append_column("tail_known", tail_known).filter(pc.invert(known))
    for row in dangling.to_pylist():
        absent = ", ".join(c for c, ok in ((row["head"], row["head_known"]), (row["tail"], row["tail_known"])) if not ok)
        problems.report(path, row["line"], "dangling relation", f"{row['rel']}/{row['rela'] or '-'} names unknown concept {absent}")
    relations = relations.filter(known)
    # UMLS states hierarchy both ways (PAR and CHD): one edge per (head, type, tail, rela, source).
    key = ["head", "type", "tail", "rela", "source"]
    folded = relations.group_by(key).aggregate([("rel", "min"), ("support", "max"), ("line", "min")])
    folded = folded.rename_columns([*key, "rel", "support", "line"]).sort_by("line")
    return folded.select(RELATION_SCHEMA.names).cast(RELATION_SCHEMA)


def _support(rrf_dir: Path, problems: ProblemLog) -> pa.Table:
    """Relationship support counts medkg keeps in MRSAT (STYPE=RUI, ATN=SUPPORT), by RUI."""
    path = table_path(rrf_dir, "MRSAT")
    ruis: list[str] = []
    counts: list[int] = []
    if path.exists():
        for number, row in read_table(path, MRSAT, problems, prefilter=f"|{SUPPORT_ATTRIBUTE}|".encode()):
            if row.STYPE != "RUI" or row.ATN != SUPPORT_ATTRIBUTE:
                continue
            try:
                counts.append(int(row.ATV))
                ruis.append(row.METAUI)
            except ValueError:
                problems.report(path, number, "bad value", f"SUPPORT of {row.METAUI} is {row.ATV!r}, not a count")
    return pa.table({"RUI": pa.array(ruis, pa.string()), "count": pa.array(counts, pa.int64())})
