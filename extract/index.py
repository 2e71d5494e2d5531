"""The concept index that report matching runs on, built from any RRF directory.

Two parts, cached together under `$MEDKG_HOME/extract-index/` and rebuilt only when the
RRF files change: an exact dictionary (normalised term -> concept ids) for the fast path,
and a QuickUMLS index (simstring) for approximate matches of words the dictionary lacks.
The dictionary is kept as JSON (data: reading a cache can never run code), and a cache that
does not read back is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from tqdm import tqdm

from kg.atomic import replace_directory, sibling_directory
from kg.errors import DamagedFileError
from kg.normalize import name_key
from kg.problems import MalformedInputError, ProblemLog
from kg.rrf import MRCONSO, MRSTY, SUPPRESSED, is_preferred, read_table, require_tables, table_path
from kg.semgroups import SemanticType

INDEX_VERSION = 4  # 4: the dictionary in terms.json, no longer a pickle
TERMS_FILE = "terms.json"
# Qualifiers, activities, organisations, places, organisms and genes are not report findings.
EXCLUDED_GROUPS = frozenset({"CONC", "ACTI", "OCCU", "ORGA", "GEOG", "LIVB", "GENE"})
# CheXpert mention lists are labeler triggers and word stems ("atelecta", "the heart"), not names.
EXCLUDED_ATOMS = frozenset({("CHEXPERT", "SY")})
QUICKUMLS_DIR = "quickumls"  # a complete QuickUMLS installation: QuickUMLS(index.quickumls_path) loads it


def stopwords() -> frozenset[str]:
    return frozenset(files("extract").joinpath("data/stopwords.txt").read_text(encoding="utf-8").split())


@dataclass(frozen=True, slots=True)
class ConceptInfo:
    name: str
    semantic_types: tuple[str, ...]
    group: str


@dataclass
class ConceptIndex:
    directory: Path
    terms: dict[str, tuple[str, ...]]  # name_key -> concept ids, the concept whose preferred name it is first
    concepts: dict[str, ConceptInfo]
    vocabulary: frozenset[str]  # every normalised word of every term: words outside it may be misspelt

    @property
    def quickumls_path(self) -> Path:
        return self.directory / QUICKUMLS_DIR

    @property
    def simstring_path(self) -> Path:
        return self.quickumls_path / "umls-simstring.db"

    def resolve(self, name: str) -> str | None:
        """The concept a name denotes, for rules and label sets written with names rather than ids."""
        ids = self.terms.get(name_key(name))
        return ids[0] if ids else None


def fingerprint(rrf_dir: Path, types: dict[str, SemanticType]) -> dict[str, object]:
    """What the index depends on: the RRF files, the stop words and the semantic groups."""
    rrf_dir = Path(rrf_dir).resolve()
    stats = {t: [table_path(rrf_dir, t).stat().st_size, table_path(rrf_dir, t).stat().st_mtime_ns] for t in ("MRCONSO", "MRSTY")}
    inputs = "\n".join(sorted(stopwords())) + "".join(f"{t.tui}{t.group}" for t in sorted(types.values(), key=lambda t: t.tui))
    return {"version": INDEX_VERSION, "rrf_dir": str(rrf_dir), "files": stats, "inputs": hashlib.sha1(inputs.encode()).hexdigest()}


def index_dir(rrf_dir: Path, home: Path) -> Path:
    digest = hashlib.sha1(str(Path(rrf_dir).resolve()).encode()).hexdigest()[:12]
    return home / "extract-index" / digest


def ensure_index(rrf_dir: Path, home: Path, types: dict[str, SemanticType], rebuild: bool = False, progress: bool = True) -> tuple[ConceptIndex, bool]:
    """The cached index for `rrf_dir`, building it when missing or stale; returns (index, built)."""
    require_tables(rrf_dir, ("MRCONSO", "MRSTY"))
    target = index_dir(rrf_dir, home)
    stamp = fingerprint(rrf_dir, types)
    manifest = target / "index.json"
    if not rebuild and _stamp(manifest) == stamp:
        try:
            return load_index(target), False
        except DamagedFileError:
            pass  # rebuilt below
    build_index(rrf_dir, target, types, stamp, progress)
    return load_index(target), True


def _stamp(manifest: Path) -> object:
    try:
        return json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def load_index(directory: Path) -> ConceptIndex:
    """The index `build_index` wrote to `directory`; DamagedFileError when its dictionary does not read back."""
    path = directory / TERMS_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        terms = {key: tuple(ids) for key, ids in data["terms"].items()}
        concepts = {cid: ConceptInfo(name, tuple(types), group) for cid, (name, types, group) in data["concepts"].items()}
        if not all(isinstance(cid, str) and cid in concepts for ids in terms.values() for cid in ids):
            raise ValueError("terms name concepts the index lacks")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise DamagedFileError(f"concept index {path} is unreadable ({error}); it has to be built again") from error
    return ConceptIndex(directory, terms, concepts, frozenset(word for key in terms for word in key.split()))


def build_index(rrf_dir: Path, target: Path, types: dict[str, SemanticType], stamp: dict[str, object], progress: bool = True) -> None:
    from unidecode import unidecode

    problems = ProblemLog()
    tuis: dict[str, list[str]] = {}
    for _, row in read_table(table_path(rrf_dir, "MRSTY"), MRSTY, problems):
        tuis.setdefault(row.CUI, []).append(row.TUI)
    stop = stopwords()
    concepts: dict[str, ConceptInfo] = {}
    keyed: dict[str, list[tuple[bool, str]]] = {}
    strings: dict[tuple[str, str], bool] = {}  # (QuickUMLS term, concept) -> preferred
    rows = read_table(table_path(rrf_dir, "MRCONSO"), MRCONSO, problems)
    for _, row in tqdm(rows, desc="indexing terms", unit=" terms", disable=not progress, mininterval=0.5):
        if row.LAT != "ENG" or row.SUPPRESS in SUPPRESSED:
            continue
        preferred = is_preferred(row)
        if preferred or row.CUI not in concepts:
            types_of = tuple(tuis.get(row.CUI, ()))
            group = types[types_of[0]].group if types_of and types_of[0] in types else ""
            concepts[row.CUI] = ConceptInfo(row.STR, types_of, group)
        if (row.SAB, row.TTY) in EXCLUDED_ATOMS:
            continue
        key = name_key(row.STR)
        if not key or key in stop or (len(key) < 3 and " " not in key) or key.replace(" ", "").isdigit():
            continue
        keyed.setdefault(key, []).append((preferred, row.CUI))
        term = (unidecode(row.STR.lower()), row.CUI)
        strings[term] = strings.get(term, False) or preferred
    terms: dict[str, tuple[str, ...]] = {}
    for key, entries in keyed.items():
        ids = [cui for preferred, cui in sorted(entries, key=lambda e: not e[0]) if concepts[cui].group and concepts[cui].group not in EXCLUDED_GROUPS]
        if ids:
            terms[key] = tuple(dict.fromkeys(ids))
    if not terms:
        raise MalformedInputError(f"{table_path(rrf_dir, 'MRCONSO')}: no term of a finding, anatomy, device or procedure to index "
                                  "(are the semantic types in MRSTY.RRF known to the semantic groups file?)")
    tmp = sibling_directory(target)
    try:
        _write_quickumls(tmp / QUICKUMLS_DIR, strings, concepts, progress)
        (tmp / TERMS_FILE).write_text(json.dumps({
            "terms": terms, "concepts": {cid: [c.name, c.semantic_types, c.group] for cid, c in concepts.items()},
        }, ensure_ascii=False), encoding="utf-8")
        (tmp / "index.json").write_text(json.dumps(stamp))
        replace_directory(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _write_quickumls(directory: Path, strings: dict[tuple[str, str], bool], concepts: dict[str, ConceptInfo], progress: bool) -> None:
    """The layout QuickUMLS's own installer writes, without its prompts and spaCy model download."""
    from quickumls.toolbox import CuiSemTypesDB, SimstringDBWriter

    (directory / "umls-simstring.db").mkdir(parents=True)
    (directory / "cui-semtypes.db").mkdir()
    for flag, text in (("lowercase", ""), ("normalize-unicode", ""), ("language", "ENG"), ("database_backend", "unqlite")):
        (directory / f"{flag}.flag").write_text(text)
    simstring = SimstringDBWriter(str(directory / "umls-simstring.db"))
    semtypes = CuiSemTypesDB(str(directory / "cui-semtypes.db"), database_backend="unqlite")
    seen: set[str] = set()
    for (term, cui), preferred in tqdm(sorted(strings.items()), desc="QuickUMLS index", unit=" terms", disable=not progress, mininterval=0.5):
        if concepts[cui].group in EXCLUDED_GROUPS or not concepts[cui].group:
            continue
        if term not in seen:
            simstring.insert(term)
            seen.add(term)
        semtypes.insert(term, cui, set(concepts[cui].semantic_types), int(preferred))
    simstring.db.close()
    semtypes.cui_db.close()
    semtypes.semtypes_db.close()
