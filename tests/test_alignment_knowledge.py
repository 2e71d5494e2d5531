"""The aligner's knowledge on the real open graph: assets and their caches, the entity vocabulary, report and image
states, entity similarity, word-level concepts and pseudo pairs; and the readers under it (mentions, concept vectors)."""

from __future__ import annotations

import json
import re
import shutil

import pyarrow.compute as pc
import pytest
import torch

from alignment.knowledge import (
    EntityVocabulary, build_vocabulary, ensure_assets, entity_similarity, image_states, pseudo_pairs, report_states,
    word_concepts,
)
from alignment.knowledge import assets as assets_module
from alignment.states import ABSENT, PRESENT, UNCERTAIN, UNKNOWN
from embed.vectors import read_vectors, write_vectors
from extract.io import mention_record, read_mentions, read_reports, write_mentions
from extract.model import Report
from kg.problems import ProblemLog
from kg.tables import read_tables

CHESTXRAY14 = ["Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia", "Pneumothorax",
               "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia"]
TEXTS = {
    "effusion": "FINDINGS: Small left pleural effusion. No pneumothorax.",
    "pneumonia": "IMPRESSION: Possible right lower lobe pneumonia.",
    "normal": "FINDINGS: The heart is normal in size. The lungs are clear.\n\nIMPRESSION: No acute cardiopulmonary disease.",
    "normal-but": "FINDINGS: Small right pleural effusion.\n\nIMPRESSION: No acute cardiopulmonary disease.",
    "linear": "FINDINGS: Linear atelectasis at the left base. Calcified granuloma in the right upper lobe.",
    "history": "INDICATION: History of pneumonia.\n\nFINDINGS: Calcified granuloma. Pleural thickening at the apex.",
    "granuloma": "FINDINGS: Calcified granuloma. Degenerative changes of the spine.",
}


def extracted(extractor, texts: dict[str, str]) -> list[tuple[Report, list]]:
    """(report, mentions) in this process; the extractor also splits each report into sections."""
    found = []
    for report_id, text in texts.items():
        report = Report(report_id, text, "csv")
        found.append((report, extractor.mentions(report)))
    return found


@pytest.fixture(scope="module")
def reports(extractor):
    return extracted(extractor, TEXTS)


@pytest.fixture(scope="module")
def vocab(reports, open_kg_dir, concept_index):
    return build_vocabulary("chestxray14", open_kg_dir, concept_index, reports, extra=4, min_positive=1)


def test_vocabulary_starts_with_the_label_set_and_covers_is_a_descendants(vocab, open_kg_dir, concept_index, tmp_path):
    assert vocab.labels[:14] == CHESTXRAY14 and vocab.num_labels == 14
    names = dict(zip(vocab.labels, vocab.names))
    assert (names["Effusion"], names["Cardiomegaly"], names["Pleural_Thickening"], names["Hernia"]) == (
        "pleural effusion", "cardiomegaly", "pleural thickening", "hiatal hernia")
    assert vocab.ids[vocab.index("Effusion")] == concept_index.resolve("pleural effusion")
    # A concept below atelectasis on IS_A counts as Atelectasis.
    atelectasis = concept_index.resolve("atelectasis")
    relations = read_tables(open_kg_dir, ProblemLog()).relations
    is_a = relations.filter(pc.and_(pc.equal(relations["type"], "IS_A"), pc.equal(relations["tail"], atelectasis)))
    children = set(is_a["head"].to_pylist())
    linear = concept_index.resolve("linear atelectasis")
    assert linear in children and linear in vocab.label_concepts[vocab.index("Atelectasis")]
    # Extra entities: frequent finding concepts of the reports that no label covers; INDICATION mentions do not count.
    extras = vocab.names[14:]
    assert vocab.labels[14:] == [None] * len(extras) and "calcified granuloma" in extras
    assert all(concept_id not in cover for concept_id in vocab.ids[14:] for cover in vocab.label_concepts[:14])
    assert vocab.reports[vocab.index("Pneumonia")] == 1  # "History of pneumonia" is not a finding
    vocab.save(tmp_path / "vocab.json")
    assert EntityVocabulary.load(tmp_path / "vocab.json") == vocab
    (tmp_path / "bad.json").write_text('{"version": 1, "ids": ["x"]}')
    with pytest.raises(ValueError, match="bad.json"):
        EntityVocabulary.load(tmp_path / "bad.json")


def test_report_states_follow_chexpert_rule_and_normal_statements(reports, vocab):
    ids, states = report_states(reports, vocab)
    assert ids == list(TEXTS) and states.dtype == torch.long and states.shape == (len(TEXTS), len(vocab))
    row = {report_id: dict(zip(vocab.labels[:14], states[i, :14].tolist())) for i, report_id in enumerate(ids)}
    effusion = row["effusion"]
    assert (effusion["Effusion"], effusion["Pneumothorax"], effusion["Atelectasis"]) == (PRESENT, ABSENT, UNKNOWN)
    assert row["pneumonia"]["Pneumonia"] == UNCERTAIN
    assert row["linear"]["Atelectasis"] == PRESENT  # a mention of a descendant concept
    assert row["history"]["Pneumonia"] == UNKNOWN and row["history"]["Pleural_Thickening"] == PRESENT
    # A normal statement rules out every unmentioned label ...
    assert set(row["normal"].values()) == {ABSENT}
    # ... but not when a label is present, and it says nothing of extra entities.
    assert row["normal-but"]["Effusion"] == PRESENT and row["normal-but"]["Atelectasis"] == UNKNOWN
    assert (states[ids.index("normal"), 14:] == UNKNOWN).all()
    _, plain = report_states(reports, vocab, normal_absent=False)
    assert plain[ids.index("normal"), vocab.index("Atelectasis")] == UNKNOWN
    # Reports given by id alone still get the mention rule.
    _, by_id = report_states({report.id: mentions for report, mentions in reports[:1]}, vocab)
    assert by_id[0, vocab.index("Effusion")] == PRESENT


def test_image_states_from_labels(vocab):
    images = [{"labels": {"Effusion": PRESENT, "Pleural_Thickening": ABSENT}},
              {"labels": {"No Finding": PRESENT, "normal": PRESENT}}, {"labels": {"pleural thickening": UNCERTAIN}}]
    states = image_states(images, vocab)
    assert states.shape == (3, len(vocab)) and states.dtype == torch.long
    assert states[0, vocab.index("Effusion")] == PRESENT and states[0, vocab.index("Pleural_Thickening")] == ABSENT
    assert states[0, vocab.index("Atelectasis")] == UNKNOWN and (states[:, 14:] == UNKNOWN).all()
    assert (states[1, :14] == ABSENT).all()  # the label set's normal label
    assert states[2, vocab.index("Pleural_Thickening")] == UNCERTAIN
    with pytest.raises(ValueError, match="state 7"):
        image_states([{"labels": {"Effusion": 7}}], vocab)


def test_entity_similarity(concept_index, open_kg_dir):
    ids = [concept_index.resolve(n) for n in ("atelectasis", "linear atelectasis", "cardiomegaly", "pneumothorax")]
    vocab = EntityVocabulary("t", ids, ["atelectasis", "linear atelectasis", "cardiomegaly", "pneumothorax"],
                             ["Atelectasis", None, None, None], [frozenset({ids[0]}), *(frozenset({i}) for i in ids[1:])])
    vectors = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.75, (1 - 0.75**2) ** 0.5]])
    similarity = entity_similarity(vocab, open_kg_dir, vectors)
    assert similarity.shape == (4, 4) and ((0 <= similarity) & (similarity <= 1)).all()
    assert torch.equal(similarity.diagonal(), torch.ones(4))
    assert similarity[0, 1] == similarity[1, 0] == 1  # IS_A, from the graph, both ways
    assert similarity[0, 2] == 1  # identical vectors
    assert similarity[0, 3] == pytest.approx(0.5)  # cosine 0.75 sharpened: (0.75 - 0.5) / 0.5
    assert similarity[1, 2] == 0  # orthogonal, clipped
    assert entity_similarity(vocab)[0, 1] == 0  # without the graph, only coverage says IS_A
    covered = EntityVocabulary("t", ids[:2], ["a", "b"], ["A", None], [frozenset(ids[:2]), frozenset(ids[1:2])])
    assert entity_similarity(covered)[1, 0] == 1


def test_pseudo_pairs_prefer_exact_label_matches():
    u, p, a = UNKNOWN, PRESENT, ABSENT
    images = torch.tensor([[p, a, a, u], [a, p, p, u], [a, a, a, u]])
    reports = torch.tensor([
        [p, p, a, p],  # overlaps image 0 and 1
        [p, a, a, a],  # image 0 exactly (the last column is not a label: no image knows it)
        [a, p, p, p],  # image 1 exactly
        [u, u, u, u],  # no present label, says nothing
        [a, a, a, a],  # no present label, states it
    ])
    for seed in range(5):
        assert pseudo_pairs(images, reports, seed).tolist() == [1, 2, 4]
    many = torch.tensor([[p, a, a, u]] * 4 + [[a, p, a, u]])
    chosen = {pseudo_pairs(torch.tensor([[p, a, a, u]]), many, seed).item() for seed in range(20)}
    assert chosen == {0, 1, 2, 3}  # ties broken at random by the seed


def test_word_concepts(reports):
    report, mentions = reports[0]  # "FINDINGS: Small left pleural effusion. No pneumothorax."
    text = report.text
    words = [(m.start(), m.end()) for m in re.finditer(r"\w+", text)]
    mask = word_concepts([text, "no words"], [mentions, []], [words, [(0, 2), (3, 8), (0, 0)]])
    assert mask.shape == (2, len(words)) and mask.dtype == torch.bool
    flagged = {text[s:e] for (s, e), hit in zip(words, mask[0].tolist()) if hit}
    assert {"pleural", "effusion", "pneumothorax"} <= flagged and "Small" not in flagged and "No" not in flagged
    assert not mask[1].any()
    with pytest.raises(ValueError, match="offsets must index"):
        word_concepts(["other text"], [mentions], [words])


def test_mentions_file_round_trip_and_bad_lines(reports, tmp_path):
    path = tmp_path / "m.jsonl"
    assert write_mentions(path, reports[:2], text=True) == 2
    lines = path.read_text().splitlines()
    bad = json.dumps({**mention_record(*reports[0]), "id": "dup"})
    path.write_text("\n".join([lines[0], "{not json", lines[1], '{"id": "x", "mentions": [{"id": "c"}]}', bad, bad]) + "\n")
    problems = ProblemLog()
    found = dict(read_mentions(path, problems))
    assert list(found) == ["effusion", "pneumonia", "dup"]
    assert [(p.line, p.kind) for p in problems.problems] == [(2, "bad record"), (4, "bad record"), (6, "duplicate id")]
    assert all(p.file == str(path) for p in problems.problems)
    assert [m.id for m in found["effusion"]] == [m.id for m in reports[0][1]]
    report, _ = next(read_reports(path, ProblemLog()))
    assert report.text == reports[0][0].text and report.sections == reports[0][0].sections


def test_concept_vectors_round_trip_and_damage(tmp_path):
    vectors = torch.randn(3, 4)
    vectors_path, ids_path = write_vectors(tmp_path, ["a", "b", "c"], vectors, {"model": "rotate"})
    loaded = read_vectors(tmp_path)
    assert loaded.ids == ["a", "b", "c"] and torch.equal(loaded.vectors, vectors) and loaded.metadata["model"] == "rotate"
    assert "b" in loaded and "z" not in loaded and torch.equal(loaded.row("c"), vectors[2])
    assert torch.equal(read_vectors(ids_path).vectors, vectors)
    ids_path.write_text(json.dumps(["a", "c", "b"]))
    with pytest.raises(ValueError, match="not from the same export"):
        read_vectors(tmp_path)
    ids_path.write_text(json.dumps(["a", "b"]))
    with pytest.raises(ValueError, match="lists 2 concept ids but .* has 3 rows"):
        read_vectors(tmp_path)
    vectors_path.write_bytes(vectors_path.read_bytes()[:40])
    with pytest.raises(ValueError, match="concept_vectors.safetensors"):
        read_vectors(tmp_path)
    vectors_path.unlink()
    with pytest.raises(FileNotFoundError, match="concept_vectors.safetensors"):
        read_vectors(vectors_path)


def test_mentions_are_cached_by_input_and_graph(data_dir, open_kg_dir, medkg_home, concept_index, tmp_path, monkeypatch):
    corpus = tmp_path / "reports.csv"
    corpus.write_text('id,text\nr1,"FINDINGS: No pleural effusion."\nr2,"IMPRESSION: Cardiomegaly."\nr3,"Possible pneumonia."\n')
    extractions = []
    real = assets_module.extract_reports
    monkeypatch.setattr(assets_module, "extract_reports", lambda *a, **k: extractions.append(1) or real(*a, **k))
    first = ensure_assets(data_dir, medkg_home, progress=False, kg_dir=open_kg_dir, reports=corpus, workers=1)
    assert first.built == {"graph": False, "index": False, "mentions": True} and len(extractions) == 1
    assert [r.id for r, _ in first.reports()] == ["r1", "r2", "r3"] and first.index.directory == concept_index.directory
    again = ensure_assets(data_dir, medkg_home, progress=False, kg_dir=open_kg_dir, reports=corpus, workers=1)
    assert again.mentions == first.mentions and not again.built["mentions"] and len(extractions) == 1
    corpus.write_text('id,text\nr1,"FINDINGS: Small pleural effusion."\n')
    changed = ensure_assets(data_dir, medkg_home, progress=False, kg_dir=open_kg_dir, reports=corpus, workers=1)
    assert changed.built["mentions"] and changed.mentions != first.mentions and len(extractions) == 2
    assert not first.mentions.exists()  # the superseded file of the same corpus is gone
    assert [r.id for r, _ in changed.reports()] == ["r1"]
    given = ensure_assets(data_dir, medkg_home, progress=False, kg_dir=open_kg_dir, mentions=changed.mentions)
    assert given.mentions == changed.mentions and len(extractions) == 2


def test_the_graph_is_built_once_and_again_when_its_inputs_change(data_dir, open_kg_dir, concept_index, tmp_path, monkeypatch):
    builds = []

    def build(data, out, problems, progress):
        builds.append(out)
        shutil.copytree(open_kg_dir, out, dirs_exist_ok=True)

    monkeypatch.setattr(assets_module, "build_open_graph", build)
    monkeypatch.setattr(assets_module, "ensure_index", lambda *a, **k: (concept_index, False))
    mentions = tmp_path / "given.jsonl"
    mentions.write_text("")
    for _ in range(2):
        assets = ensure_assets(data_dir, tmp_path / "cache", progress=False, mentions=mentions)
    assert builds == [tmp_path / "cache" / "open-kg"] and assets.kg_dir == builds[0] and not assets.built["graph"]
    stamp = tmp_path / "cache" / "open-kg.inputs.json"
    stamp.write_text(stamp.read_text().replace('"version": 1', '"version": 0'))  # as if an input had changed
    assert ensure_assets(data_dir, tmp_path / "cache", progress=False, mentions=mentions).built["graph"] and len(builds) == 2
