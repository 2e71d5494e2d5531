"""`medkg explain` as Python: entity attention maps, word–region maps and a viewer page for images under a run."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from graphdb.uri import medkg_home
from kg.errors import DamagedFileError, InputError, MissingInputError

log = logging.getLogger(__name__)

DEFAULT_TOP = 5
REPORT_SUFFIXES = (".txt", ".md", ".text", ".report")  # a --report that names a missing file of these is an error
VOCABULARY_FILES = ("vocabulary.json", "model/vocabulary.json")  # an `EntityVocabulary.save` file a run may hold


@dataclass
class ExplainSummary:
    out: Path
    index: Path                                   # the viewer page
    manifest: dict                                # what `explain.json` holds
    files: list[Path] = field(default_factory=list)

    def __str__(self) -> str:
        lines = []
        for image in self.manifest["images"]:
            lines.append(f"{image['file']} ({image['size'][1]}x{image['size'][0]}):")
            width = max((len(e["name"]) for e in image["entities"]), default=6)
            for e in image["entities"]:
                lines.append(f"  {e['name'].ljust(width)}  P(present) {e['score']:.3f}  {e['prediction']:<9}  {e['overlay']}")
            if image["words"]:
                lines.append(f"  {len(image['words'])} word maps in {image['id']}/words/")
            if image["shared_peak"]:
                lines.append(f"  note: all {len(image['entities'])} maps peak at the same region: they show where the "
                             "model looks, not where each finding is")
        lines.append(f"{len(self.files)} files in {self.out}; open {self.index}")
        return "\n".join(lines)


def run_paths(checkpoint: Path) -> tuple[Path, Path]:
    """(run directory, model directory) of a run directory, its `model/` directory or its `checkpoint.pt`."""
    from alignment.model import CONFIG_NAME
    from alignment.train import CONFIG_FILE, MODEL_DIR

    path = Path(checkpoint)
    if path.is_file():
        path = path.parent
    if (path / CONFIG_NAME).exists():  # the model directory itself
        run, model = path.parent, path
    else:
        run, model = path, path / MODEL_DIR
    if not path.exists():
        raise MissingInputError(f"checkpoint not found: {checkpoint}")
    if not (model / CONFIG_NAME).exists():
        raise MissingInputError(f"{checkpoint} holds no trained model (no {MODEL_DIR}/{CONFIG_NAME}; a run writes it "
                                "when its last epoch ends)")
    if not (run / CONFIG_FILE).exists():
        raise MissingInputError(f"{run} has no {CONFIG_FILE}: the image transform of the run is needed")
    return run, model


def read_report(report: str | Path) -> str:
    """The report's text: a file's contents when `report` names an existing file, else `report` itself (a single
    word ending in .txt or .md that names no file is an error, not a one-word report)."""
    text = str(report)
    if len(text) < 4096 and "\n" not in text:
        path = Path(text).expanduser()
        try:
            is_file = path.is_file()
        except OSError:  # e.g. a name too long for the file system: text
            is_file = False
        if is_file:
            text = path.read_text(encoding="utf-8", errors="replace")
        elif " " not in text.strip() and path.suffix.lower() in REPORT_SUFFIXES:
            raise MissingInputError(f"report file not found: {text} (give an existing file, or the report's text)")
    if not text.strip():
        raise InputError("the report is empty")
    return text


def _vocabulary(run: Path, names: list[str]):
    from alignment.knowledge.vocabulary import EntityVocabulary

    for relative in VOCABULARY_FILES:
        path = run / relative
        if path.exists():
            vocabulary = EntityVocabulary.load(path)
            if list(vocabulary.names) == names:
                return vocabulary
            log.warning("%s names other entities than the model: not used", path)
    return None


def _concept_index(config, data_dir: Path | None):
    """The run's graph's concept index when it is already built (its cache in $MEDKG_HOME), else None: building
    one takes minutes, more than an entity name is worth."""
    from extract.index import TERMS_FILE, index_dir, load_index
    from kg.paths import default_data_dir

    cache = medkg_home() / "alignment"
    if config.data.kg:
        kg = Path(config.data.kg)
        kg = kg if kg.is_absolute() else Path(data_dir or default_data_dir()) / kg
    else:
        kg = cache / "open-kg"
    directory = index_dir(kg, cache)
    if not (directory / TERMS_FILE).exists():
        return None
    try:
        return load_index(directory)
    except DamagedFileError as error:  # a damaged cache: names still resolve
        log.warning("concept index %s unreadable (%s): entity look-up without the graph's names", directory, error)
        return None


def resolve_entities(names: list[str], texts: Sequence[str], run: Path, config, data_dir: Path | None = None) -> list[int]:
    """Entity indices of names, synonyms, labels or concept ids: the model's names and the run's vocabulary file
    first, the graph's concept index (when built) only for what they do not resolve."""
    from alignment.explain import EntityResolver, UnknownEntityError

    vocabulary = _vocabulary(run, names)
    resolver = EntityResolver(names, vocabulary)
    try:
        return resolver.resolve_all(texts)
    except UnknownEntityError:
        index = _concept_index(config, data_dir)
        if index is None:
            raise
        return EntityResolver(names, vocabulary, index).resolve_all(texts)


def explain(images: Sequence[Path], checkpoint: Path, out: Path, entities: Sequence[str] | None = None,
            top: int | None = None, report: str | Path | None = None, device: str | None = None,
            temperature: float | None = None, data_dir: Path | None = None, resize: str = "stretch") -> ExplainSummary:
    """For each image: P(present), the prediction and the attention map of each entity (`entities` by name,
    synonym or concept id; else the `top` by P(present), default 5), as PNG overlays and .npy maps in the file's
    pixel coordinates; with `report` (text, or a file), each word's attention map; `out/index.html` to browse.
    `resize`: "stretch" (the file resized to the model's square input, as training and evaluation read it) or
    "crop" (shorter side resized, centre crop; the margins get zero), `alignment.explain.model_input`."""
    import torch

    from alignment.evaluate import run_config
    from alignment.explain import MANIFEST, RESIZES, Explainer, default_temperature, write_explanations
    from alignment.model import AlignmentModel
    from alignment.viewer import write_viewer
    from encoders.device import resolve_device
    from encoders.transforms import ImageTransform

    if entities and top is not None:
        raise InputError("give either entities or top, not both")
    if top is not None and top < 1:
        raise InputError(f"top must be at least 1, got {top}")
    if not images:
        raise InputError("no images given")
    if resize not in RESIZES:
        raise InputError(f"resize: one of {', '.join(RESIZES)}, got {resize!r}")
    paths = [Path(p) for p in images]
    for path in paths:
        if not path.is_file():
            raise MissingInputError(f"image not found: {path}")
    text = read_report(report) if report is not None else None
    run, model_dir = run_paths(Path(checkpoint))
    config = run_config(run)
    saved = AlignmentModel.saved_description(model_dir)  # names and decoder known before the weights load
    if not (saved.get("config") or {}).get("decoder"):
        raise InputError(f"{checkpoint}: this model has no entity decoder (a run of config clip, gloria, mgca or "
                         "medclip); explain needs one trained with the entity losses (configs kad, medkg)")
    chosen = resolve_entities(list(saved["entity_names"]), list(entities), run, config, data_dir) if entities else None
    target = resolve_device(device)
    model = AlignmentModel.from_pretrained(model_dir, device=target)
    if chosen is None:
        top = min(top or DEFAULT_TOP, len(model.entity_names))
    temperature = temperature if temperature is not None else default_temperature(config)
    explainer = Explainer(model, ImageTransform(config.transform).to(target), temperature, resize)
    with torch.inference_mode():
        explained = [explainer.image(path, chosen, top, text) for path in paths]
    out = Path(out)
    manifest = write_explanations(explained, out, text, model.entity_names, checkpoint=str(checkpoint),
                                  word_temperature=temperature, resize=resize)
    index = write_viewer(out, manifest)
    files = [index, out / MANIFEST]
    for image in manifest["images"]:
        files.append(out / image["radiograph"])
        files += [out / e[kind] for e in image["entities"] for kind in ("overlay", "map")]
        files += [out / w["map"] for w in image["words"]]
    return ExplainSummary(out, index, manifest, files)
