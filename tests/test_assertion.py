"""Assertion engine on radiology sentences (IU X-ray phrasing), built from the real lexicons."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from extract.assertion import AssertionEngine, write_assertions_tsv
from extract.lexicon import (
    BACKWARD,
    BIDIRECTIONAL,
    FORWARD,
    NEGATED,
    NONE,
    PSEUDO,
    SUPPLEMENT,
    TERMINATE,
    UNCERTAIN,
    LexiconError,
    Trigger,
    expand_compact,
    expand_pattern,
    load_triggers,
    read_medspacy,
    read_negex,
    read_supplement,
    tokenize,
)
from extract.model import ASSERTIONS, AssertionResult
from kg.problems import MalformedInputError, ProblemLog


@pytest.fixture(scope="module")
def lexicon_dir(data_dir) -> Path:
    path = data_dir / "lexicons"
    assert path.is_dir(), f"lexicon folder missing: {path}"
    return path


@pytest.fixture(scope="module")
def engine(lexicon_dir) -> AssertionEngine:
    return AssertionEngine.from_lexicons(lexicon_dir)


# (sentence, target, expected assertion); wording from IU X-ray FINDINGS / IMPRESSION / INDICATION.
CASES = [
    # plain negation
    ("No pleural effusion.", "pleural effusion", "absent"),
    ("There is no pneumothorax.", "pneumothorax", "absent"),
    ("No acute cardiopulmonary abnormality.", "cardiopulmonary abnormality", "absent"),
    ("There is no focal consolidation.", "consolidation", "absent"),
    ("There is no evidence of pneumothorax.", "pneumothorax", "absent"),
    ("There is no evidence of active tuberculosis.", "tuberculosis", "absent"),
    ("No definite pleural effusion seen.", "pleural effusion", "absent"),
    ("No focal alveolar consolidation, no definite pleural effusion seen.", "pleural effusion", "absent"),
    # lists under one negation
    ("No focal consolidation, pleural effusion, or pneumothorax.", "consolidation", "absent"),
    ("No focal consolidation, pleural effusion, or pneumothorax.", "pleural effusion", "absent"),
    ("No focal consolidation, pleural effusion, or pneumothorax.", "pneumothorax", "absent"),
    ("No pneumonia, effusions, edema, pneumothorax, adenopathy, nodules or masses.", "pneumonia", "absent"),
    ("No pneumonia, effusions, edema, pneumothorax, adenopathy, nodules or masses.", "edema", "absent"),
    ("No pneumonia, effusions, edema, pneumothorax, adenopathy, nodules or masses.", "masses", "absent"),
    (
        "No focal consolidation, suspicious pulmonary opacity, large pleural effusion, or pneumothorax is identified.",
        "pneumothorax",
        "absent",
    ),
    ("Specifically, no evidence of focal consolidation, pneumothorax, or pleural effusion.", "pleural effusion", "absent"),
    # backward negation
    ("Pneumothorax is not seen.", "pneumothorax", "absent"),
    ("Pleural effusion or pneumothorax is not identified.", "pleural effusion", "absent"),
    ("Pneumothorax is no longer visualized.", "pneumothorax", "absent"),
    ("Pneumonia isn't seen.", "pneumonia", "absent"),
    ("Previously seen left pleural effusion has resolved.", "pleural effusion", "absent"),
    ("The previously visualized bilateral pneumothoraces have resolved.", "pneumothoraces", "absent"),
    ("Previously present left base airspace disease has cleared.", "airspace disease", "absent"),
    ("The right internal jugular catheter has been removed.", "catheter", "absent"),
    ("Resolved interstitial edema.", "edema", "absent"),
    # negation cues: without, with no, free of, clear of, negative for, removal of
    ("Heart size is enlarged without pulmonary edema.", "pulmonary edema", "absent"),
    ("Heart size is enlarged without pulmonary edema.", "heart", "present"),
    ("Stable cardiomegaly with no focal airspace disease.", "airspace disease", "absent"),
    ("Stable cardiomegaly with no focal airspace disease.", "cardiomegaly", "present"),
    ("The lungs are free of focal airspace disease.", "airspace disease", "absent"),
    ("The lungs are free of focal airspace disease.", "lungs", "present"),
    ("Lungs are clear of focal consolidation.", "consolidation", "absent"),
    ("Lungs are clear of focal consolidation.", "lungs", "present"),
    ("Negative for pneumothorax or pleural effusion.", "pleural effusion", "absent"),
    ("Interval removal of the left chest tube.", "chest tube", "absent"),
    ("No increased interstitial markings.", "interstitial markings", "absent"),
    # uncertainty cues
    ("Cannot exclude pneumonia.", "pneumonia", "uncertain"),
    ("Tortuous aorta, cannot exclude ascending aortic aneurysm.", "aneurysm", "uncertain"),
    ("Tortuous aorta, cannot exclude ascending aortic aneurysm.", "aorta", "present"),
    ("The presence of an underlying aneurysm cannot be excluded.", "aneurysm", "uncertain"),
    ("Superimposed infection cannot be entirely excluded.", "infection", "uncertain"),
    ("Lingular atelectasis or infiltrate can not be ruled out.", "infiltrate", "uncertain"),
    ("Upper lobe airspace disease or pulmonary nodule is not excluded.", "nodule", "uncertain"),
    ("Tuberculosis should be excluded clinically.", "tuberculosis", "uncertain"),
    ("Left base opacity may represent atelectasis.", "atelectasis", "uncertain"),
    ("Left base opacity may represent atelectasis.", "opacity", "present"),
    ("There may be small bilateral pleural effusions.", "pleural effusions", "uncertain"),
    ("Stable bilateral interstitial opacities, could represent scarring or infiltrate.", "infiltrate", "uncertain"),
    ("Questionable right middle lobe pulmonary nodule.", "nodule", "uncertain"),
    ("Question of posterior 10th rib fracture.", "fracture", "uncertain"),
    ("Differential includes pneumonia and atelectasis.", "pneumonia", "uncertain"),
    ("Differential includes pneumonia and atelectasis.", "atelectasis", "uncertain"),
    ("Differential diagnosis includes infection and aspiration.", "aspiration", "uncertain"),
    ("Left basilar atelectasis versus pneumonia.", "atelectasis", "uncertain"),
    ("Left basilar atelectasis versus pneumonia.", "pneumonia", "uncertain"),
    ("Scarring vs. atelectasis in the right base.", "atelectasis", "uncertain"),
    ("Possible small left pleural effusion.", "pleural effusion", "uncertain"),
    ("There is possible left lower lobe pneumonia.", "pneumonia", "uncertain"),
    ("Aspiration or edema are also possible.", "aspiration", "uncertain"),
    ("Mild bibasilar airspace disease, possibly atelectasis.", "atelectasis", "uncertain"),
    ("Mild bibasilar airspace disease, possibly atelectasis.", "airspace disease", "present"),
    ("Probable small bilateral pleural effusions.", "pleural effusions", "uncertain"),
    ("Findings most likely represent atelectasis.", "atelectasis", "uncertain"),
    ("Patchy opacities in right upper lobe, concerning for pneumonia.", "pneumonia", "uncertain"),
    ("Patchy opacities in right upper lobe, concerning for pneumonia.", "opacities", "present"),
    ("Nodular opacity suspicious for malignancy.", "malignancy", "uncertain"),
    ("Apical oligemia suggestive of some emphysema.", "emphysema", "uncertain"),
    ("The lungs appear hyperexpanded suggesting emphysema.", "emphysema", "uncertain"),
    ("Dense nodule in the right lower lobe suggests a previous granulomatous process.", "granulomatous process", "uncertain"),
    ("Right basilar opacities favored to represent atelectasis.", "atelectasis", "uncertain"),
    ("Borderline cardiomegaly.", "cardiomegaly", "present"),  # a severity: IU indexes it Cardiomegaly/borderline
    ("The heart is borderline in size.", "heart", "present"),
    ("Equivocal right basilar opacity.", "opacity", "uncertain"),
    ("Previously visualized nodule in right lower lobe not well-seen on today's study.", "nodule", "uncertain"),
    ("Right lower lobe opacity may be secondary to atelectasis.", "atelectasis", "uncertain"),
    # questions in the INDICATION (hypothetical -> uncertain)
    ("Evaluate for pneumonia.", "pneumonia", "uncertain"),
    ("XXXX-year-old male, rule out tuberculosis.", "tuberculosis", "uncertain"),
    ("XXXX-year-old male, XXXX, shortness of breath, question pneumonia.", "pneumonia", "uncertain"),
    ("Heart murmur?", "murmur", "uncertain"),
    # not hedges: consistent with / compatible with / indeterminate
    ("Calcified nodules consistent with old granulomatous disease.", "granulomatous disease", "present"),
    ("The lungs are hyperinflated compatible with emphysema.", "emphysema", "present"),
    ("Age-indeterminate compression deformity of T11.", "deformity", "present"),
    ("Indeterminate right lower lobe nodule.", "nodule", "present"),
    # pseudo-negations
    ("No increase in the size of the left pleural effusion.", "pleural effusion", "present"),
    ("No change in the left pleural effusion.", "pleural effusion", "present"),
    ("No significant change in the appearance of the right upper lobe nodule.", "nodule", "present"),
    ("There is not only a right pleural effusion but also a small pneumothorax.", "pleural effusion", "present"),
    ("There is a 9 mm right lower lobe pulmonary nodule, not seen on prior exams.", "nodule", "present"),
    ("Left pleural effusion has not resolved.", "pleural effusion", "present"),
    ("Partially resolved right lower lobe pneumonia.", "pneumonia", "present"),
    ("The left pleural effusion is not significantly changed.", "pleural effusion", "present"),
    # scope ends: sentence end, terminators
    ("No effusion. Cardiomegaly is present.", "cardiomegaly", "present"),
    ("No effusion. Cardiomegaly is present.", "effusion", "absent"),
    ("No pneumothorax, but there is a small left effusion.", "effusion", "present"),
    ("No pneumothorax, but there is a small left effusion.", "pneumothorax", "absent"),
    ("No acute abnormality however there is a small calcified granuloma.", "granuloma", "present"),
    ("There is no pneumothorax, although a small effusion is present.", "effusion", "present"),
    ("No focal consolidation; small left pleural effusion.", "pleural effusion", "present"),
    ("Mild cardiomegaly, otherwise no acute abnormality.", "cardiomegaly", "present"),
    ("Mild cardiomegaly, otherwise no acute abnormality.", "abnormality", "absent"),
    ("Opacity in the right lower lobe which may represent pneumonia.", "opacity", "present"),
    ("Opacity in the right lower lobe which may represent pneumonia.", "pneumonia", "uncertain"),
    ("Cardiomegaly with mild bibasilar infiltrates versus atelectasis.", "cardiomegaly", "present"),
    # priority between cues
    ("No pneumothorax, possible small left effusion.", "effusion", "uncertain"),
    ("No pneumothorax, possible small left effusion.", "pneumothorax", "absent"),
    ("Possible small left effusion, no pneumothorax.", "pneumothorax", "absent"),
    ("Possible small left effusion, no pneumothorax.", "effusion", "uncertain"),
    ("No effusion, pneumonia cannot be excluded.", "pneumonia", "uncertain"),
    ("No effusion, pneumonia cannot be excluded.", "effusion", "absent"),
    ("There is no focal air space opacity to suggest a pneumonia.", "pneumonia", "absent"),
    ("No findings suspicious for malignancy.", "malignancy", "absent"),
    ("Without comparisons, this may represent a focal area of infection.", "infection", "uncertain"),
    # present findings, no cue; normal / clear are not cues
    ("There is a small left pleural effusion.", "pleural effusion", "present"),
    ("Stable calcified granuloma in the left upper lung.", "granuloma", "present"),
    ("The lungs are clear.", "lungs", "present"),
    ("Heart size is normal.", "heart", "present"),
    ("The heart is not enlarged.", "heart", "present"),
    # de-identification mask: XXXX is an unknown word, never a cue
    ("There are no XXXX of a pleural effusion.", "pleural effusion", "absent"),
    ("Normal chest x-XXXX.", "chest", "present"),
    ("The heart and lungs have XXXX XXXX in the interval.", "heart", "present"),
    ("There is XXXX deformity of T6.", "deformity", "present"),
    ("This most XXXX represents atelectasis given the low lung volumes.", "atelectasis", "present"),
]


@pytest.mark.parametrize(("sentence", "target", "expected"), CASES, ids=[f"{t}|{s[:50]}" for s, t, _ in CASES])
def test_assert_phrase(engine, sentence, target, expected):
    result = engine.assert_phrase(sentence, target)
    assert result.assertion == expected, f"{target!r} in {sentence!r}: got {result}"
    assert result.assertion in ASSERTIONS
    if expected == "present":  # no cue decided it
        assert result.trigger is None
    else:
        assert result.trigger and result.trigger in sentence, result


def test_corpus_is_large_enough():
    assert len({s for s, _, _ in CASES}) >= 60


@pytest.mark.parametrize(
    ("sentence", "target", "trigger"),
    [
        ("NO PLEURAL EFFUSION.", "effusion", "NO"),
        ("There is No evidence of pneumothorax.", "pneumothorax", "No evidence of"),
        ("Infection Cannot Be Excluded.", "infection", "Cannot Be Excluded"),
        ("Atelectasis vs. pneumonia.", "pneumonia", "vs."),
        ("Pneumothorax is not seen.", "pneumothorax", "is not seen"),
        ("There is no focal air space opacity to suggest a pneumonia.", "pneumonia", "no"),
        ("Heart murmur?", "murmur", "?"),
    ],
)
def test_trigger_is_the_cue_as_written(engine, sentence, target, trigger):
    assert engine.assert_phrase(sentence, target).trigger == trigger


def test_one_scan_serves_every_mention(engine):
    text = "No pneumothorax, but there is a small left effusion which may represent early pneumonia."
    scanned = engine.sentence(text)
    spans = {w: (text.index(w), text.index(w) + len(w)) for w in ("pneumothorax", "effusion", "pneumonia", "small")}
    assert scanned.assertion(*spans["pneumothorax"]) == AssertionResult("absent", "No")
    assert scanned.assertion(*spans["effusion"]) == AssertionResult("present", None)
    assert scanned.assertion(*spans["small"]) == AssertionResult("present", None)
    assert scanned.assertion(*spans["pneumonia"]) == AssertionResult("uncertain", "may represent")
    # the same result from a fresh scan, any number of times
    for _ in range(3):
        assert scanned.assertion(*spans["pneumothorax"]) == engine.sentence(text).assertion(*spans["pneumothorax"])
    kinds = [t.category for t in scanned.triggers]
    assert kinds == [NEGATED, TERMINATE, TERMINATE, UNCERTAIN]


def test_mention_offsets_are_checked(engine):
    scanned = engine.sentence("No effusion.")
    with pytest.raises(ValueError):
        scanned.assertion(5, 50)
    with pytest.raises(ValueError):
        scanned.assertion(3, 3)
    assert engine.sentence("Clear lungs.").assertion(0, 5) == AssertionResult("present", None)


def test_assert_phrase_needs_the_target(engine):
    with pytest.raises(ValueError, match="not found"):
        engine.assert_phrase("No pleural effusion.", "pneumothorax")
    with pytest.raises(ValueError):
        engine.assert_phrase("No pleural effusion.", "  ")
    # first occurrence, any case
    assert engine.assert_phrase("Effusion on the left; no effusion on the right.", "EFFUSION").assertion == "present"


def test_cue_inside_the_mention_is_ignored(engine):
    text = "There is no free air under the diaphragm."
    assert engine.sentence(text).assertion(text.index("free air"), text.index("free air") + 8).assertion == "absent"
    text = "There is free air under the diaphragm."
    assert engine.sentence(text).assertion(text.index("free air"), text.index("free air") + 8).assertion == "present"


def test_scope_is_bounded(lexicon_dir):
    short = AssertionEngine.from_lexicons(lexicon_dir, max_scope=5)
    text = "No focal consolidation, suspicious pulmonary opacity, large pleural effusion, or pneumothorax."
    assert short.assert_phrase(text, "consolidation").assertion == "absent"
    assert short.assert_phrase(text, "pneumothorax").assertion == "present"
    with pytest.raises(ValueError):
        AssertionEngine([], max_scope=0)


def test_no_rules_means_present():
    assert AssertionEngine([]).assert_phrase("No pleural effusion.", "effusion") == AssertionResult("present", None)


# ---------------------------------------------------------------- lexicons


def test_negex_types_map_to_categories(lexicon_dir):
    rules = {r.phrase: r for r in read_negex(lexicon_dir / "negex" / "negex_triggers.txt")}
    assert len(rules) >= 260
    expect = {
        "denies": (NEGATED, FORWARD),  # PREN
        "unlikely": (NEGATED, BACKWARD),  # POST
        "rule out": (UNCERTAIN, FORWARD),  # PREP
        "not ruled out": (UNCERTAIN, BACKWARD),  # POSP
        "but": (TERMINATE, NONE),  # CONJ
        "no increase": (PSEUDO, NONE),  # PSEU
    }
    for phrase, (category, direction) in expect.items():
        rule = rules[tuple(tokenize(phrase))]
        assert (rule.category, rule.direction) == (category, direction), rule


def test_medspacy_patterns_are_expanded(lexicon_dir):
    rules = read_medspacy(lexicon_dir / "medspacy" / "context_rules.json")
    by_phrase = {r.phrase: r for r in rules}
    # IN lists and optional tokens become literal variants
    assert ("sufficient", "to", "rule", "him", "out", "for") in by_phrase
    assert ("adequate", "to", "rule", "out") in by_phrase
    assert by_phrase[("no", "new")].category == NEGATED
    assert by_phrase[("likely",)].category == UNCERTAIN  # POSSIBLE_EXISTENCE "possible" pattern
    assert by_phrase[("n't", "appear")].direction == FORWARD
    # TERMINATE direction wins over the category; HISTORICAL / FAMILY are dropped
    assert by_phrase[("however",)].category == TERMINATE
    assert ("history",) not in by_phrase and ("mother",) not in by_phrase
    # HYPOTHETICAL is uncertain
    assert by_phrase[("if",)].category == UNCERTAIN


def test_expand_pattern_and_compact_syntax():
    assert expand_pattern([{"LOWER": {"IN": ["a", "b"]}}, {"LOWER": "c", "OP": "?"}]) == [("a", "c"), ("a",), ("b", "c"), ("b",)]
    assert expand_pattern([{"LOWER": "a", "OP": "*"}]) is None  # not a simple pattern: the literal is used
    assert expand_pattern([{"LEMMA": "be"}]) is None
    assert set(expand_compact("(is|are)? not seen")) == {("is", "not", "seen"), ("are", "not", "seen"), ("not", "seen")}
    assert expand_compact("vs .") == [("vs", ".")]


def test_supplement_covers_the_radiology_cues():
    rules = {r.phrase: r for r in read_supplement(SUPPLEMENT)}

    def rule(phrase: str) -> Trigger:
        return rules[tuple(tokenize(phrase))]

    for phrase in ("cannot exclude", "question of", "differential includes", "differential diagnosis includes", "possible",
                   "possibly", "probable", "likely", "most likely", "suspicious for", "concerning for", "suggestive of",
                   "suggest", "may represent", "may be", "could represent", "evaluate for"):  # fmt: skip
        assert rule(phrase).category == UNCERTAIN and rule(phrase).direction == FORWARD, phrase
    for phrase in ("cannot be excluded", "can not be ruled out", "not excluded"):
        assert (rule(phrase).category, rule(phrase).direction) == (UNCERTAIN, BACKWARD), phrase
    for phrase in ("versus", "vs", "vs.", "questionable", "equivocal"):
        assert (rule(phrase).category, rule(phrase).direction) == (UNCERTAIN, BIDIRECTIONAL), phrase
    for phrase in ("no evidence of", "without", "no", "negative for", "free of", "clear of"):
        assert (rule(phrase).category, rule(phrase).direction) == (NEGATED, FORWARD), phrase
    for phrase in ("has resolved", "is not seen", "has been removed"):
        assert (rule(phrase).category, rule(phrase).direction) == (NEGATED, BACKWARD), phrase
    for phrase in ("no increase in", "no change in", "not only", "no significant change", "consistent with", "compatible with",
                   "indeterminate", "borderline"):  # fmt: skip
        assert rule(phrase).category == PSEUDO, phrase
    for phrase in ("but", "however", "although", "though", "which", "aside from", "except", "otherwise"):
        assert rule(phrase).category == TERMINATE, phrase
    assert ("clear",) not in rules and ("normal",) not in rules and ("with",) not in rules


def test_mask_is_never_a_trigger(lexicon_dir):
    assert all("xxxx" not in r.phrase for r in load_triggers(lexicon_dir))


def test_supplement_lines_need_a_comment_and_known_values(tmp_path):
    bad = tmp_path / "sup.tsv"
    bad.write_text("phrase\tcategory\tdirection\tcomment\nno way\tnegated\tforward\t\n", encoding="utf-8")
    with pytest.raises(LexiconError, match="comment"):
        read_supplement(bad)
    bad.write_text("no way\tdoubtful\tforward\twhy\n", encoding="utf-8")
    with pytest.raises(LexiconError, match="category"):
        read_supplement(bad)
    bad.write_text("no way\tnegated\tforward\twhy\nno way\tuncertain\tforward\twhy not\n", encoding="utf-8")
    with pytest.raises(LexiconError, match="already defined"):
        read_supplement(bad)


def test_supplement_overrides_lexicons(lexicon_dir):
    rules = {r.phrase: r for r in load_triggers(lexicon_dir)}
    # NegEx/medspaCy: "evaluate for" is a negation; in a radiology indication it is a question
    assert rules[("evaluate", "for")].category == UNCERTAIN
    assert rules[("evaluate", "for")].source == "medkg"
    without = {r.phrase: r for r in load_triggers(lexicon_dir, supplement=None)}
    assert without[("evaluate", "for")].category == NEGATED


@pytest.mark.parametrize(
    "missing", ["negex/negex_triggers.txt", "negex/hypothetical_triggers.txt", "medspacy/context_rules.json"]
)
def test_missing_lexicon_file_is_named(lexicon_dir, tmp_path, missing):
    copy = tmp_path / "lexicons"
    shutil.copytree(lexicon_dir, copy)
    (copy / missing).unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(str(copy / missing))):
        AssertionEngine.from_lexicons(copy)


def test_missing_supplement_is_named(lexicon_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.tsv"):
        AssertionEngine.from_lexicons(lexicon_dir, supplement=tmp_path / "nope.tsv")


def test_malformed_medspacy_file(lexicon_dir, tmp_path):
    copy = tmp_path / "lexicons"
    shutil.copytree(lexicon_dir, copy)
    path = copy / "medspacy" / "context_rules.json"
    path.chmod(0o644)
    path.write_text(json.dumps({"rules": []}), encoding="utf-8")
    with pytest.raises(LexiconError, match="context_rules"):
        AssertionEngine.from_lexicons(copy)


# ---------------------------------------------------------------- TSV scoring command


def test_write_assertions_tsv(engine, tmp_path):
    src = tmp_path / "gold.tsv"
    src.write_text(
        "id\ttarget\tsentence\n"
        "1\tpleural effusion\tNo pleural effusion.\n"
        "2\tpneumonia\tCannot exclude pneumonia.\n"
        "3\tcardiomegaly\tMild cardiomegaly.\n"
        "4\tonly two columns\n"
        "\n"
        "5\tpneumothorax\tNo pleural effusion.\n"
        "6\tnodule\tQuestionable right middle lobe pulmonary nodule.\r\n",
        encoding="utf-8",
    )
    out = tmp_path / "out" / "pred.tsv"
    problems = ProblemLog()
    assert write_assertions_tsv(src, out, engine, problems) == 4
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines == ["id\tassertion", "1\tabsent", "2\tuncertain", "3\tpresent", "4\t", "5\t", "6\tuncertain"]
    assert [(p.line, p.kind) for p in problems.problems] == [(5, "column count"), (7, "target not in sentence")]
    assert all(p.file == str(src) for p in problems.problems)
    assert sorted(q.name for q in out.parent.iterdir()) == ["pred.tsv"]  # no temporary file left behind


def test_write_assertions_tsv_strict_leaves_nothing(engine, tmp_path):
    src = tmp_path / "gold.tsv"
    src.write_text("id\ttarget\tsentence\n1\teffusion\tNo effusion.\n2\tbroken\n", encoding="utf-8")
    out = tmp_path / "pred.tsv"
    out.write_text("previous\n", encoding="utf-8")
    with pytest.raises(MalformedInputError, match=r"gold.tsv:3"):
        write_assertions_tsv(src, out, engine, ProblemLog(strict=True))
    assert out.read_text(encoding="utf-8") == "previous\n"  # untouched: written atomically or not at all
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gold.tsv", "pred.tsv"]


def test_write_assertions_tsv_header_and_missing_input(engine, tmp_path):
    src = tmp_path / "noheader.tsv"
    src.write_text("1\teffusion\tNo effusion.\n", encoding="utf-8")
    out = tmp_path / "pred.tsv"
    problems = ProblemLog()
    assert write_assertions_tsv(src, out, engine, problems) == 1
    assert out.read_text(encoding="utf-8").splitlines() == ["id\tassertion", "1\tabsent"]
    assert problems.counts() == {"header": 1}
    with pytest.raises(FileNotFoundError):
        write_assertions_tsv(tmp_path / "absent.tsv", tmp_path / "x.tsv", engine)
    assert not (tmp_path / "x.tsv").exists()
