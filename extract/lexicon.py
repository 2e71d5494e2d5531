"""Assertion trigger lexicons: NegEx, ConText hypothetical, medspaCy ConText and medkg's own supplement.

Every source is turned into the same `Trigger` rule (a lower-case token sequence, a category and a
direction) and merged into one rule set keyed by the phrase; `extract.assertion` applies it.

Sources and how their labels are mapped:

* `negex/negex_triggers.txt` (Chapman's NegEx, `phrase<TAB><TAB>[TYPE]`): PREN -> negated forward,
  POST -> negated backward, PREP -> uncertain forward, POSP -> uncertain backward, CONJ -> terminate,
  PSEU -> pseudo.
* `negex/hypothetical_triggers.txt` (ConText hypothetical list, same format): PREN -> uncertain forward
  ("if", "should there"), PSEU -> pseudo, CONJ -> terminate.  A hypothetical finding is neither asserted
  present nor denied, and present/absent/uncertain has no fourth value, so HYPOTHETICAL is uncertain.
* `medspacy/context_rules.json`: NEGATED_EXISTENCE -> negated, POSSIBLE_EXISTENCE and HYPOTHETICAL ->
  uncertain; direction TERMINATE -> terminate, PSEUDO -> pseudo (whatever the category).  HISTORICAL and
  FAMILY rules (and their terminators) are dropped: "history of pneumonia" or "mother had cancer" is
  not evidence about this image, the three labels cannot express it, and the INDICATION/HISTORY section
  flag on mentions (`extract.model.NOT_FINDINGS`) already keeps such text out of finding labels.
  spaCy token patterns are expanded into literal phrase variants: a token may be a `LOWER` string or
  `{"IN": [...]}` list and may carry `"OP": "?"`; a pattern using anything else (other attributes,
  `*`/`+`, regexes) falls back to the rule's `literal`.
* `extract/data/radiology_context.tsv` (shipped with medkg): radiology cues the lexicons miss or get
  wrong for reports ("cannot exclude", "may represent", "versus", "X is not seen"), one per line with
  a comment saying why.  Its phrases may use the same expansion in a compact form: `(a|b)` is a choice
  of tokens, `(a|b)?` an optional choice.
* The negation experiencer/history files (`negex/experiencer_triggers.txt`, `history_triggers.txt`) are
  not read: they only carry FAMILY/HISTORICAL cues, dropped as above.  NegBio and CheXpert patterns are
  Semgrex over dependency graphs; their cue words were mined by hand into the supplement (its comments
  name them).

Merging: one rule per phrase; on a clash the later source wins, in the order NegEx, hypothetical,
medspaCy, supplement.  So the supplement can re-type a cue (NegEx's "evaluate for" is a negation in
clinical notes; in a radiology INDICATION it asks a question, so the supplement makes it uncertain).
A phrase containing the IU de-identification mask ``xxxx`` is never a trigger.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass
from pathlib import Path

from kg.errors import MedkgError, MissingInputError

NEGATED = "negated"
UNCERTAIN = "uncertain"
PSEUDO = "pseudo"
TERMINATE = "terminate"
CATEGORIES = (NEGATED, UNCERTAIN, PSEUDO, TERMINATE)

FORWARD = "forward"
BACKWARD = "backward"
BIDIRECTIONAL = "bidirectional"
NONE = "none"  # pseudo and terminate triggers have no scope of their own
DIRECTIONS = (FORWARD, BACKWARD, BIDIRECTIONAL, NONE)

SUPPLEMENT = Path(__file__).resolve().parent / "data" / "radiology_context.tsv"
NEGEX_FILE = Path("negex") / "negex_triggers.txt"
HYPOTHETICAL_FILE = Path("negex") / "hypothetical_triggers.txt"
MEDSPACY_FILE = Path("medspacy") / "context_rules.json"
MASK = "xxxx"  # IU X-ray de-identification mask, an unknown word
MAX_VARIANTS = 4096  # a pattern expanding to more literal phrases than this falls back to its literal

# Words (with a split-off "n't" as spaCy does), numbers (decimals kept whole so "1.5" is no sentence
# end), and any other single non-space character.
TOKEN_RE = re.compile(r"[^\W\d_]+?(?=n't\b)|n't\b|[^\W\d_]+|\d+(?:[.,]\d+)*|[^\w\s]|_", re.UNICODE)

_NEGEX_TYPES = {
    "PREN": (NEGATED, FORWARD),
    "POST": (NEGATED, BACKWARD),
    "PREP": (UNCERTAIN, FORWARD),
    "POSP": (UNCERTAIN, BACKWARD),
    "CONJ": (TERMINATE, NONE),
    "PSEU": (PSEUDO, NONE),
}
_HYPOTHETICAL_TYPES = {
    "PREN": (UNCERTAIN, FORWARD),
    "POST": (UNCERTAIN, BACKWARD),
    "CONJ": (TERMINATE, NONE),
    "PSEU": (PSEUDO, NONE),
}
_MEDSPACY_CATEGORIES = {
    "NEGATED_EXISTENCE": NEGATED,
    "POSSIBLE_EXISTENCE": UNCERTAIN,
    "UNCERTAIN": UNCERTAIN,
    "HYPOTHETICAL": UNCERTAIN,
    "PSEUDO": PSEUDO,
    "TERMINATE": TERMINATE,
}
_MEDSPACY_IGNORED = frozenset({"HISTORICAL", "FAMILY"})
_DIRECTION_NAMES = {
    "forward": FORWARD,
    "backward": BACKWARD,
    "bidirectional": BIDIRECTIONAL,
    "both": BIDIRECTIONAL,
    "none": NONE,
    "-": NONE,
    "": NONE,
    "terminate": NONE,
    "pseudo": NONE,
}


class LexiconError(MedkgError, ValueError):
    """A lexicon file that cannot be read as its format says."""


@dataclass(frozen=True, slots=True)
class Trigger:
    phrase: tuple[str, ...]  # lower-case tokens, as `tokenize` splits them
    category: str  # one of CATEGORIES
    direction: str  # one of DIRECTIONS; NONE for pseudo and terminate
    source: str  # "negex", "hypothetical", "medspacy", "medkg"

    def __post_init__(self) -> None:
        if self.category not in CATEGORIES:
            raise ValueError(f"unknown trigger category {self.category!r}")
        if self.direction not in DIRECTIONS:
            raise ValueError(f"unknown trigger direction {self.direction!r}")
        if not self.phrase:
            raise ValueError("empty trigger phrase")

    @property
    def text(self) -> str:
        return " ".join(self.phrase)


def tokenize(text: str) -> list[str]:
    """Lower-case tokens of a phrase, split exactly as sentences are."""
    return TOKEN_RE.findall(text.lower())


def _require(path: Path) -> Path:
    if not path.is_file():
        raise MissingInputError(f"lexicon file not found: {path}")
    return path


def _make(phrase_tokens: list[str] | tuple[str, ...], category: str, direction: str, source: str) -> Trigger | None:
    phrase = tuple(phrase_tokens)
    if not phrase or MASK in phrase:
        return None
    if category in (PSEUDO, TERMINATE):
        direction = NONE
    elif direction == NONE:
        raise LexiconError(f"{category} trigger {' '.join(phrase)!r} needs a direction")
    return Trigger(phrase, category, direction, source)


def read_negex(path: Path, source: str = "negex", types: dict[str, tuple[str, str]] | None = None) -> list[Trigger]:
    """Read a NegEx trigger file (`phrase<TAB><TAB>[TYPE]` lines, any line ending)."""
    types = _NEGEX_TYPES if types is None else types
    rules: list[Trigger] = []
    text = _require(path).read_text(encoding="utf-8-sig")
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.fullmatch(r"(.+?)\s*\[(\w+)\]", line)
        if m is None:
            raise LexiconError(f"{path}:{lineno}: not a NegEx trigger line: {line!r}")
        phrase, tag = m.group(1).strip(), m.group(2).upper()
        if tag not in types:  # e.g. ONEW in the history list
            continue
        rule = _make(tokenize(phrase), *types[tag], source)
        if rule is not None:
            rules.append(rule)
    return rules


def _token_choices(token: dict) -> tuple[list[tuple[str, ...]], bool] | None:
    """The literal alternatives (each a token tuple) of one spaCy token pattern, and whether optional."""
    if set(token) - {"LOWER", "OP"}:
        return None
    op = token.get("OP")
    if op not in (None, "?"):
        return None
    value = token.get("LOWER")
    if isinstance(value, str):
        words = [value]
    elif isinstance(value, dict) and set(value) == {"IN"} and isinstance(value["IN"], list):
        words = [w for w in value["IN"] if isinstance(w, str)]
        if len(words) != len(value["IN"]):
            return None
    else:
        return None
    return [tuple(tokenize(w)) for w in words], op == "?"


def _expand(choices: list[tuple[list[tuple[str, ...]], bool]]) -> list[tuple[str, ...]] | None:
    options = [alts + [()] if optional else alts for alts, optional in choices]
    count = 1
    for alts in options:
        count *= len(alts)
    if count > MAX_VARIANTS:
        return None
    out: dict[tuple[str, ...], None] = {}
    for combo in itertools.product(*options):
        phrase = tuple(tok for part in combo for tok in part)
        if phrase:
            out[phrase] = None
    return list(out)


def expand_pattern(pattern: list[dict]) -> list[tuple[str, ...]] | None:
    """Literal phrase variants of a spaCy token pattern, or None where it is not a simple one."""
    choices = []
    for token in pattern:
        if not isinstance(token, dict):
            return None
        c = _token_choices(token)
        if c is None:
            return None
        choices.append(c)
    return _expand(choices)


def read_medspacy(path: Path) -> list[Trigger]:
    """Read medspaCy ConText rules (`{"context_rules": [{category, literal, pattern, direction}]}`)."""
    try:
        data = json.loads(_require(path).read_text(encoding="utf-8-sig"))
        items = data["context_rules"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise LexiconError(f"{path}: not a medspaCy context_rules file: {e}") from e
    rules: list[Trigger] = []
    for i, item in enumerate(items):
        category = str(item.get("category", "")).upper()
        direction = str(item.get("direction", "")).upper()
        literal = item.get("literal")
        if category in _MEDSPACY_IGNORED:
            continue
        if direction == "TERMINATE":
            cat, dirn = TERMINATE, NONE
        elif direction == "PSEUDO":
            cat, dirn = PSEUDO, NONE
        elif category in _MEDSPACY_CATEGORIES:
            cat = _MEDSPACY_CATEGORIES[category]
            dirn = _DIRECTION_NAMES.get(direction.lower())
            if dirn is None:
                raise LexiconError(f"{path}: rule {i} ({literal!r}): unknown direction {direction!r}")
        else:
            raise LexiconError(f"{path}: rule {i} ({literal!r}): unknown category {category!r}")
        pattern = item.get("pattern")
        variants = expand_pattern(pattern) if isinstance(pattern, list) and pattern else None
        if variants is None:
            if not isinstance(literal, str) or not literal.strip():
                raise LexiconError(f"{path}: rule {i}: no usable pattern and no literal")
            variants = [tuple(tokenize(literal))]
        for phrase in variants:
            rule = _make(phrase, cat, dirn, "medspacy")
            if rule is not None:
                rules.append(rule)
    return rules


def expand_compact(phrase: str) -> list[tuple[str, ...]]:
    """Expand the supplement's compact phrase syntax: `(a|b)` a choice, `(a|b)?` an optional choice."""
    choices: list[tuple[list[tuple[str, ...]], bool]] = []
    for part in re.findall(r"\([^)]*\)\??|[^\s(]+", phrase.strip()):
        if part.startswith("("):
            optional = part.endswith("?")
            inner = part[1:-2] if optional else part[1:-1]
            alts = [tuple(tokenize(a)) for a in inner.split("|")]
            if not all(alts):
                raise LexiconError(f"empty alternative in {phrase!r}")
            choices.append((alts, optional))
        else:
            choices.append(([tuple(tokenize(part))], False))
    variants = _expand(choices)
    if not variants:
        raise LexiconError(f"phrase {phrase!r} expands to nothing usable")
    return variants


def read_supplement(path: Path = SUPPLEMENT) -> list[Trigger]:
    """Read medkg's TSV supplement: `phrase<TAB>category<TAB>direction<TAB>comment`, '#' comments, a header."""
    rules: list[Trigger] = []
    seen: dict[tuple[str, ...], int] = {}
    text = _require(path).read_text(encoding="utf-8-sig")
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split("\t")
        if fields[0] == "phrase":  # header
            continue
        if len(fields) != 4:
            raise LexiconError(f"{path}:{lineno}: expected 4 tab-separated columns, got {len(fields)}")
        phrase, category, direction, comment = (f.strip() for f in fields)
        if category not in CATEGORIES:
            raise LexiconError(f"{path}:{lineno}: unknown category {category!r}")
        dirn = _DIRECTION_NAMES.get(direction.lower())
        if dirn is None:
            raise LexiconError(f"{path}:{lineno}: unknown direction {direction!r}")
        if not comment:
            raise LexiconError(f"{path}:{lineno}: every supplement line needs a comment saying why")
        try:
            variants = expand_compact(phrase)
        except LexiconError as e:
            raise LexiconError(f"{path}:{lineno}: {e}") from e
        for variant in variants:
            try:
                rule = _make(variant, category, dirn, "medkg")
            except LexiconError as e:
                raise LexiconError(f"{path}:{lineno}: {e}") from e
            if rule is None:
                continue
            if rule.phrase in seen and seen[rule.phrase] != lineno:
                raise LexiconError(f"{path}:{lineno}: phrase {rule.text!r} is already defined on line {seen[rule.phrase]}")
            seen[rule.phrase] = lineno
            rules.append(rule)
    return rules


def merge(*sources: list[Trigger]) -> dict[tuple[str, ...], Trigger]:
    """One rule per phrase; a later source overrides an earlier one."""
    merged: dict[tuple[str, ...], Trigger] = {}
    for rules in sources:
        for rule in rules:
            merged[rule.phrase] = rule
    return merged


def load_triggers(lexicon_dir: Path, supplement: Path | None = SUPPLEMENT) -> list[Trigger]:
    """All trigger rules from a `shared/data/lexicons`-layout folder plus the supplement, merged."""
    lexicon_dir = Path(lexicon_dir)
    sources = [
        read_negex(lexicon_dir / NEGEX_FILE),
        read_negex(lexicon_dir / HYPOTHETICAL_FILE, "hypothetical", _HYPOTHETICAL_TYPES),
        read_medspacy(lexicon_dir / MEDSPACY_FILE),
    ]
    if supplement is not None:
        sources.append(read_supplement(Path(supplement)))
    return sorted(merge(*sources).values(), key=lambda r: (r.phrase, r.category))
