"""The data of a training run, made ready once: images decoded and cached, reports with their mentions,
each side's entity states, the patient split, and the knowledge tensors the losses read (the entities'
similarity, their query vectors).

Decoupled training (images with labels, reports without images, the shared data's case) draws reports
apart from images; `data.pairing: pseudo` gives each image a report of matching labels instead (the plain
CLIP baseline), and `paired` uses a paired corpus's own report of each image's study. Reports are split
by patient like images (IU reports: one patient each), so no report of a test patient trains either.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from embed.vectors import read_vectors
from encoders.text import TextEncoder
from encoders.transforms import ImageTransform
from extract.model import Mention, Report
from kg.errors import InputError
from kg.problems import ProblemLog

from .batches import Batch
from .config import AlignConfig
from .data.corpora import read_corpus
from .data.images import ImageCache
from .data.records import ImageRecord
from .data.split import side_of
from .knowledge import (EntityVocabulary, build_vocabulary, concept_vectors_for, ensure_assets, entity_similarity,
                        entity_vectors, image_states, pseudo_pairs, report_states)
from .objective import Inputs
from .runtime import Runtime
from .text_cache import CorpusText, encode_corpus

log = logging.getLogger(__name__)
SPLITS = ("train", "valid", "test")


@dataclass
class TrainingData:
    vocabulary: EntityVocabulary
    pixels: Tensor                         # uint8 [N, C, S, S], every kept image
    images: list[ImageRecord]              # [N]
    image_states: Tensor                   # [N, K]
    image_rows: dict[str, Tensor]          # split -> rows of `pixels`
    reports: list[Report]                  # [R]
    mentions: list[list[Mention]]          # [R]
    report_states: Tensor                  # [R, K]
    report_rows: dict[str, Tensor]         # split -> rows of `reports`
    report_of_image: Tensor | None         # [N] the row of each image's own report (paired corpora), else None
    views: Tensor | None                   # [N, V] the rows of each image's study views (paired corpora), else None
    entity_similarity: Tensor              # [K, K] in [0, 1]
    entity_queries: Tensor                 # [K, Dq] the entity names by the knowledge encoder
    mode: str                              # data.pairing
    seed: int
    digest: str                            # identity of the data a run trains on (resumption checks it)
    text_cache: CorpusText | None = None   # every report's features, when the text encoder is frozen

    @property
    def train_images(self) -> Tensor:
        return self.image_rows["train"]

    @property
    def train_reports(self) -> Tensor:
        return self.report_rows["train"]

    def pairing(self) -> Callable[[Tensor, int], Tensor] | None:
        """The report of each training image of a batch (positions into the training reports), or None
        when reports are drawn independently."""
        if self.mode == "independent":
            return None
        if self.mode == "paired":
            assert self.report_of_image is not None
            position = {int(row): i for i, row in enumerate(self.train_reports)}
            own = torch.tensor([position.get(int(self.report_of_image[row]), -1) for row in self.train_images])
            return lambda images, epoch: own[images]
        image_states = self.image_states[self.train_images]
        report_states = self.report_states[self.train_reports]
        return lambda images, epoch: pseudo_pairs(image_states, report_states, self.seed * 1009 + epoch)[images]

    def inputs(self, batch: Batch, transform: ImageTransform, device: torch.device, region_keep: float = 1.0) -> Inputs:
        images = self.train_images[batch.images]
        reports = self.train_reports[batch.reports]
        if self.views is not None:  # a study's views, fused by the model
            study = self.pixels[self.views[images]].to(device).float() / 255
            pixels = transform(study.flatten(0, 1), train=True).unflatten(0, study.shape[:2])
        else:
            pixels = transform(self.pixels[images].to(device).float() / 255, train=True)
        rows = reports.tolist()
        cached = self.text_cache.batch(rows, device) if self.text_cache is not None else None
        return Inputs(pixels, [self.reports[r].text for r in rows], self.image_states[images].to(device),
                      self.report_states[reports].to(device), [self.mentions[r] for r in rows], region_keep, cached)

    def cache_text(self, encoder: TextEncoder, cache_dir: Path | None, progress: bool) -> None:
        """Encode every report once with a frozen `encoder` (see `alignment.text_cache`)."""
        self.text_cache = encode_corpus(encoder, [r.text for r in self.reports], cache_dir, progress=progress)

    def split_images(self, split: str) -> tuple[Tensor, Tensor]:
        rows = self.image_rows[split]
        return self.pixels[rows], self.image_states[rows]


def prepare_data(config: AlignConfig, data_dir: Path, cache_dir: Path, problems: ProblemLog, progress: bool,
                 rt: Runtime | None = None) -> TrainingData:
    """Everything a run reads, built from `data_dir` and cached under `cache_dir` (the first process builds,
    the others wait for it and read the cache)."""
    d = config.data
    if rt is not None and not rt.main:
        rt.barrier()  # the main process builds the caches first
    reports_input = _path(data_dir, d.reports) if d.reports else None
    # a paired CSV manifest names its reports by id (`report_id`) in data.reports, the corpus the mentions come from
    manifest_reports = reports_input if d.images == "csv" and d.pairing == "paired" else None
    corpus = read_corpus(d.images, _path(data_dir, d.image_root), problems, reports=manifest_reports)
    if d.pairing == "paired" and not corpus.paired:
        raise InputError(f"data.pairing 'paired' needs a paired corpus; {d.images} at {d.image_root} has no image reports "
                         "(use pseudo or independent with a separate report corpus)")
    assets = ensure_assets(data_dir, cache_dir, progress, kg_dir=_path(data_dir, d.kg) if d.kg else None,
                           mentions=_path(data_dir, d.mentions) if d.mentions else None, reports=reports_input,
                           problems=problems)
    found = assets.reports(problems)
    texts = [(report, mentions) for report, mentions in found if report.text.strip()]
    if len(texts) < len(found):
        log.warning("%d reports without text skipped", len(found) - len(texts))
    vocabulary = build_vocabulary(d.label_set, assets.kg_dir, assets.index, texts, d.extra_entities)
    pixels, images = ImageCache().load(corpus.images, config.transform.image_size, problems,
                                       cache_dir / "images" if d.image_cache else None, progress)
    if rt is not None and rt.main:
        rt.barrier()
    report_ids, states = report_states(texts, vocabulary)
    fractions = (d.split[0], d.split[1], d.split[2])
    patient_of_report = {r.id: r.patient for r in corpus.reports if r.patient is not None}
    image_side = [side_of(image.patient, fractions, d.split_seed) for image in images]
    report_side = [side_of(patient_of_report.get(i, i), fractions, d.split_seed) for i in report_ids]
    report_of_image = views = None
    if d.pairing == "paired":
        row_of = {report_id: row for row, report_id in enumerate(report_ids)}
        study_report = {r.study: r.id for r in corpus.reports}
        report_of_image = torch.tensor([row_of.get(study_report.get(image.study, ""), -1) for image in images])
        views = study_views(images, d.views)
    encoder = TextEncoder.from_pretrained(_path(data_dir, d.knowledge_encoder) if d.knowledge_encoder else None, device="cpu")
    queries = entity_vectors(vocabulary, encoder)
    concept_vectors = None
    if d.concept_vectors:
        concept_vectors = concept_vectors_for(vocabulary, read_vectors(_path(data_dir, d.concept_vectors)))
    similarity = entity_similarity(vocabulary, assets.kg_dir, concept_vectors if concept_vectors is not None else queries,
                                   config.loss.similarity_threshold)
    image_rows = {s: torch.tensor([i for i, side in enumerate(image_side) if side == s], dtype=torch.long) for s in SPLITS}
    report_rows = {s: torch.tensor([i for i, side in enumerate(report_side) if side == s], dtype=torch.long) for s in SPLITS}
    if d.pairing == "paired":  # one training item per study with a report: its first image stands for it
        assert report_of_image is not None and views is not None
        first = views[:, 0] == torch.arange(len(images))
        keep = (report_of_image >= 0) & first
        image_rows["train"] = image_rows["train"][keep[image_rows["train"]]]
    digest = hashlib.sha256(json.dumps([[i.name for i in images], report_ids, vocabulary.ids,
                                        {s: r.tolist() for s, r in image_rows.items()}]).encode()).hexdigest()[:16]
    log.info("data: %s images (%s), %s reports (%s), %d entities", len(images),
             "/".join(str(len(image_rows[s])) for s in SPLITS), len(texts),
             "/".join(str(len(report_rows[s])) for s in SPLITS), len(vocabulary))
    return TrainingData(vocabulary, pixels, images, image_states(images, vocabulary), image_rows,
                        [r for r, _ in texts], [m for _, m in texts], states, report_rows, report_of_image, views,
                        similarity, queries, d.pairing, config.train.seed, digest)


def study_views(images: list[ImageRecord], count: int) -> Tensor:
    """[N, count]: for each image, the rows of its study's images in corpus order (frontal before lateral as
    the corpus lists them), repeated cyclically to fill `count` slots; extra views beyond `count` are left out."""
    rows_of: dict[str, list[int]] = {}
    for row, image in enumerate(images):
        rows_of.setdefault(image.study, []).append(row)
    return torch.tensor([[rows_of[image.study][v % len(rows_of[image.study])] for v in range(count)] for image in images],
                        dtype=torch.long).reshape(len(images), count)


def _path(data_dir: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else data_dir / path
