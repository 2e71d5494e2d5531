"""Explanations a clinician can inspect: per image, each entity's P(present) and prediction with the entity
decoder's attention over the image, and each report word's attention over the image regions, as maps in the
image file's own pixel coordinates and as PNG overlays.

Maps. The entity map is the decoder's last-layer cross-attention of the entity's query over the image regions
(`AlignmentModel.entities`, averaged over heads), or, for a decoder with `region_gamma` > 0 (configs/medkg.yaml),
the entity's own attention, softmax over regions of γ·cos(entity query, region); either sums to 1 over the h·w
regions. A word map is the softmax
over regions of cos(projected word, projected region) / temperature (GLoRIA's word–region attention;
`default_temperature`). Both live on the region grid of the model's square input (`model_input`): by default the
whole file resized to `image_size` as training and evaluation read it ("stretch", the grid covering the whole file),
or, with "crop", the file's shorter side resized and the longer one centre-cropped by the transform
(`encoders.transforms.resize_to`; `crop_box` gives that square in the file's coordinates). `grid_to_file`
interpolates a grid bilinearly (between region centres, constant from the outermost centres to the square's edge)
onto the file's pixels, zero outside the square. Maps written to disk are max-normalised float32 [H, W].

Overlays (`overlay_figure`, Pillow only): the radiograph in grey under the map in the Turbo colour map, the
colours spanning the map's own range (its minimum, relative to its maximum, to 1: `display_low`) and the opacity
growing with the value (the minimum, and the cropped-off margins, leave the radiograph as it is); a caption with
the entity, its P(present), its prediction and the map's peak relative to uniform attention ("3.2x uniform"; a
flat map, about 1x, says the model looked everywhere, however colourful its stretched overlay), and a colour bar
whose ticks are values of attention / max.

When every requested entity's map on an image peaks at the same region (`shared_peak`), the manifest, the terminal
summary and the viewer say so: the maps then show where the model looks, not where each finding is. Measured with
`medkg evaluate` (`shared_peaks`), kad's decoder trained on the shared data draws nearly one map for all findings (0.93
of pairs peak together), medkg's entity–region maps far fewer (0.15-0.18).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

from extract.index import ConceptIndex
from kg.errors import InputError, MedkgError
from kg.lookup import SYNONYM, NameIndex
from kg.normalize import name_key

from .config import AlignConfig
from .data.images import read_image
from .knowledge.vocabulary import EntityVocabulary
from .localization import shared_peaks
from .model import AlignmentModel, TextOutput
from .states import NAMES, PRESENT

DEFAULT_OPACITY = 0.6     # overlay opacity at the map's maximum (the viewer's slider starts here)
WORD_TEMPERATURE = 0.1    # word-region softmax temperature for runs that did not train GLoRIA's local loss
CLOSEST = 5               # closest entities named when a name is unknown


class UnknownEntityError(MedkgError, ValueError):
    """An entity the model does not know; `closest` are the model's entity names nearest to it."""

    def __init__(self, text: str, closest: list[str], count: int) -> None:
        hint = f"closest: {', '.join(closest)}" if closest else "no entity name is close"
        super().__init__(f"unknown entity {text!r} ({hint}; the model has {count} entities, --top K picks by score)")
        self.text, self.closest = text, closest


# Geometry: the transform's crop in file coordinates, and grids onto file pixels


@dataclass(frozen=True)
class CropBox:
    """The square the transform keeps, in the file's pixel coordinates (edges, floats), and the file's size."""
    top: float
    left: float
    bottom: float
    right: float
    height: int
    width: int

    def as_list(self) -> list[float]:
        return [self.top, self.left, self.bottom, self.right]


def crop_box(height: int, width: int, size: int) -> CropBox:
    """Where `encoders.transforms.resize_to(images, size)` takes its square from in an H×W file: the shorter side
    resized to `size` (the longer to int(size · long / short), kornia's rounding), then a centre crop of
    (resized - size) // 2 from the top and the left, mapped back by the resize's scale (in / out, as
    `F.interpolate` maps coordinates)."""
    if min(height, width) == size:
        resized_h, resized_w = height, width
    elif width >= height:
        resized_h, resized_w = size, int(size * (width / height))
    else:
        resized_h, resized_w = int(size / (width / height)), size
    top, left = (resized_h - size) // 2, (resized_w - size) // 2
    scale_y, scale_x = height / resized_h, width / resized_w
    return CropBox(top * scale_y, left * scale_x, (top + size) * scale_y, (left + size) * scale_x, height, width)


def _interpolation(length: int, start: float, stop: float, cells: int) -> np.ndarray:
    """[length, cells]: linear interpolation weights of pixel centres 0.5, 1.5, ... over `cells` region centres
    spread evenly over [start, stop); rows of pixels outside [start, stop) are zero."""
    centres = np.arange(length, dtype=np.float64) + 0.5
    position = (centres - start) / (stop - start)  # 0..1 across the crop
    inside = (position >= 0) & (position < 1)
    g = np.clip(position * cells - 0.5, 0, cells - 1)
    low = np.floor(g).astype(np.int64)
    high = np.minimum(low + 1, cells - 1)
    t = g - low
    weights = np.zeros((length, cells))
    rows = np.arange(length)
    np.add.at(weights, (rows, low), 1 - t)
    np.add.at(weights, (rows, high), t)
    weights[~inside] = 0
    return weights


def grid_to_file(grid: np.ndarray, box: CropBox) -> np.ndarray:
    """A region grid [h, w] as float32 [H, W] over the file's pixels: bilinear inside the crop, 0 outside."""
    grid = np.asarray(grid, dtype=np.float64)
    rows = _interpolation(box.height, box.top, box.bottom, grid.shape[0])
    cols = _interpolation(box.width, box.left, box.right, grid.shape[1])
    return (rows @ grid @ cols.T).astype(np.float32)


def max_normalised(values: np.ndarray) -> np.ndarray:
    peak = float(values.max()) if values.size else 0.0
    return (values / peak if peak > 0 else np.zeros_like(values)).astype(np.float32)


# Entities by name, synonym or concept id


class EntityResolver:
    """The model's entities (`AlignmentModel.entity_names`) by name, synonym, dataset label or concept id.

    Names come from the model; the run's `EntityVocabulary` (when one is at hand and names the same entities)
    adds concept ids, labels ("Effusion"), synonyms and the concepts each entity covers (a narrower concept
    such as "loculated pleural effusion" resolves to the entity covering it); a concept index (`extract.index`,
    the graph's names) adds every name of each entity's concept and lets any name of a covered concept resolve.
    Names match by `kg.normalize.name_key` (case, punctuation and plurals aside); an unknown one raises
    UnknownEntityError naming the closest entities (rapidfuzz through `kg.lookup.NameIndex`)."""

    def __init__(self, names: Sequence[str], vocabulary: EntityVocabulary | None = None,
                 index: ConceptIndex | None = None) -> None:
        self.names = list(names)
        if vocabulary is not None and list(vocabulary.names) != self.names:
            vocabulary = None  # another run's vocabulary: its ids would point at the wrong entities
        k = len(self.names)
        aliases: list[list[str]] = [[] for _ in range(k)]
        self.ids: list[set[str]] = [set() for _ in range(k)]  # each entity's own concept id(s)
        self.covers: list[frozenset[str]] = [frozenset() for _ in range(k)]
        if vocabulary is not None:
            for i in range(k):
                self.ids[i].add(vocabulary.ids[i])
                aliases[i] += list(vocabulary.synonyms[i]) + ([vocabulary.labels[i]] if vocabulary.labels[i] else [])
                self.covers[i] = vocabulary.label_concepts[i]
        self.index = index
        if index is not None:
            keys_of: dict[str, list[str]] = {}
            wanted = {cid for ids in self.ids for cid in ids} | {c for n in self.names if (c := index.resolve(n))}
            for key, ids in index.terms.items():
                for cid in ids:
                    if cid in wanted:
                        keys_of.setdefault(cid, []).append(key)
            for i, name in enumerate(self.names):
                if not self.ids[i] and (cid := index.resolve(name)):
                    self.ids[i].add(cid)
                for cid in self.ids[i]:
                    aliases[i] += keys_of.get(cid, [])
        self.aliases = aliases
        self._by_id = {cid.casefold(): i for i in range(k) for cid in sorted(self.ids[i])}
        self._covered = [frozenset(c.casefold() for c in self.covers[i] | self.ids[i]) for i in range(k)]
        self._names = NameIndex((str(i), name, aliases[i], k - i) for i, name in enumerate(self.names))

    def resolve(self, text: str) -> int:
        query = text.strip()
        if query.casefold() in self._by_id:
            return self._by_id[query.casefold()]
        hits = self._names.search(query, limit=CLOSEST)
        if hits and hits[0].score >= SYNONYM:
            return int(hits[0].id)
        concepts = [query]  # a concept id an entity covers
        if self.index is not None:
            concepts += list(self.index.terms.get(name_key(query), ()))
        for cid in concepts:  # covered: the entity's concept or, with the run's vocabulary, an IS_A descendant
            for i, covered in enumerate(self._covered):
                if cid.casefold() in covered:
                    return i
        closest = list(dict.fromkeys(self.names[int(h.id)] for h in hits))
        if not closest:
            from rapidfuzz import process
            closest = [name for name, _, _ in process.extract(query, self.names, limit=CLOSEST)]
        raise UnknownEntityError(text, closest[:CLOSEST], len(self.names))

    def resolve_all(self, texts: Sequence[str]) -> list[int]:
        """Each text's entity, in order, without repeats."""
        return list(dict.fromkeys(self.resolve(t) for t in texts if t.strip()))


# The model's attention


@dataclass
class EntityExplanation:
    index: int                  # the entity's position among the model's entities
    name: str
    probabilities: np.ndarray   # [3]: absent, present, uncertain (alignment.states)
    grid: np.ndarray            # [h, w] the entity's map over the regions (AlignmentModel.entities; sums to 1)

    @property
    def score(self) -> float:
        """P(present)."""
        return float(self.probabilities[PRESENT])

    @property
    def prediction(self) -> str:
        return NAMES[int(np.argmax(self.probabilities))]

    @property
    def peak(self) -> float:
        """The map's maximum relative to uniform attention (1 = flat)."""
        return float(self.grid.max() * self.grid.size)


@dataclass
class WordExplanation:
    index: int                  # position among the report's words (`TextOutput.word_text`)
    text: str
    span: tuple[int, int]       # character span in the report
    grid: np.ndarray | None     # [h, w] softmax over regions; None for punctuation (not mapped)


@dataclass
class ImageExplanation:
    path: Path
    pixels: np.ndarray                      # float32 [H, W] in [0, 1], the file as the model reads it
    box: CropBox                            # the square the model saw, in the file's coordinates
    probabilities: np.ndarray               # [K, 3] every entity's class probabilities
    entities: list[EntityExplanation]       # the requested ones
    words: list[WordExplanation] = field(default_factory=list)

    @property
    def size(self) -> tuple[int, int]:
        return self.pixels.shape[0], self.pixels.shape[1]

    def file_map(self, grid: np.ndarray) -> np.ndarray:
        """A region grid as a max-normalised float32 [H, W] map in the file's pixel coordinates."""
        return max_normalised(grid_to_file(grid, self.box))


def default_temperature(config: AlignConfig) -> float:
    """1/γ1 for runs trained with GLoRIA's local loss (the scale their word–region attention was trained at),
    else WORD_TEMPERATURE."""
    if config.loss.gloria_local > 0:
        return 1.0 / config.loss.gloria_gamma[0]
    return WORD_TEMPERATURE


def is_word(text: str) -> bool:
    return any(c.isalnum() for c in text)


RESIZES = ("stretch", "crop")


def model_input(path: Path, size: int, resize: str = "stretch") -> tuple[torch.Tensor, np.ndarray, CropBox]:
    """(float [1, H', W'] the transform then takes, the file's pixels float32 [H, W], the square the model sees in
    the file's coordinates).

    "stretch" reads the file as training and evaluation do (`alignment.data.images`: the whole file resized to
    size x size, aspect ratio not kept, quantised to 8 bits like their image cache), so scores equal `medkg
    evaluate`'s and the grid covers the whole file. "crop" gives the transform the file itself, which resizes its
    shorter side and centre-crops the longer (`encoders.transforms.resize_to`): the aspect ratio is kept, the
    cropped-off margins of a non-square file are outside every map."""
    if resize not in RESIZES:
        raise InputError(f"resize: one of {', '.join(RESIZES)}, got {resize!r}")
    pixels = read_image(Path(path))
    _, height, width = pixels.shape
    if resize == "crop":
        return pixels, pixels[0].numpy(), crop_box(height, width, size)
    squeezed = torch.round(read_image(Path(path), size) * 255) / 255
    return squeezed, pixels[0].numpy(), CropBox(0.0, 0.0, float(height), float(width), height, width)


class Explainer:
    """A trained model with its evaluation transform; `image(path, ...)` → ImageExplanation. `resize`: how a file
    becomes the model's square input (`model_input`)."""

    def __init__(self, model: AlignmentModel, transform: torch.nn.Module, temperature: float = WORD_TEMPERATURE,
                 resize: str = "stretch") -> None:
        if model.decoder is None:
            raise InputError("this model has no entity decoder (trained without entity losses, e.g. config clip); "
                             "entity explanations need a run of a config with one (kad, medkg)")
        if temperature <= 0:
            raise InputError(f"the word temperature must be positive, got {temperature}")
        if resize not in RESIZES:
            raise InputError(f"resize: one of {', '.join(RESIZES)}, got {resize!r}")
        self.model, self.transform, self.temperature, self.resize = model.eval(), transform, temperature, resize
        self.size = int(transform.config.image_size)
        self._text: tuple[str, TextOutput] | None = None

    @property
    def device(self) -> torch.device:
        return self.model.device

    @torch.no_grad()
    def image(self, path: Path, entities: Sequence[int] | None = None, top: int | None = None,
              report: str | None = None) -> ImageExplanation:
        """Entities by index (`entities`), else the `top` ones by P(present) (else all); with `report`, every
        word's attention over this image's regions."""
        pixels, file_pixels, box = model_input(Path(path), self.size, self.resize)
        out = self.model.encode_image(self.transform(pixels[None].to(self.device), train=False))
        h, w = out.grid
        if out.local.shape[1] != h * w:
            raise ValueError(f"the image encoder gave {out.local.shape[1]} regions for a {h}x{w} grid")
        logits, attention = self.model.entities(out.local, summary=out.pooled)
        probabilities = logits.float().softmax(-1)[0].cpu().numpy()
        grids = attention[0].float().view(-1, h, w).cpu().numpy()
        if entities is None:
            order = np.argsort(-probabilities[:, PRESENT], kind="stable")
            entities = order[:top].tolist() if top is not None else order.tolist()
        found = [EntityExplanation(k, self.model.entity_names[k], probabilities[k], grids[k]) for k in entities]
        words = self._words(out.local[0], (h, w), report) if report else []
        return ImageExplanation(Path(path), file_pixels, box, probabilities, found, words)

    def _words(self, regions: torch.Tensor, grid: tuple[int, int], report: str) -> list[WordExplanation]:
        if self._text is None or self._text[0] != report:
            self._text = (report, self.model.encode_text([report]))
        text = self._text[1]
        count = int(text.word_mask[0].sum())
        cosines = F.normalize(text.words[0, :count].float(), dim=-1) @ F.normalize(regions.float(), dim=-1).T
        attention = (cosines / self.temperature).softmax(-1).view(count, *grid).cpu().numpy()
        return [WordExplanation(i, word, tuple(text.word_spans[0][i]), attention[i] if is_word(word) else None)
                for i, word in enumerate(text.word_text[0][:count])]


# Rendering (Pillow)

_TURBO = (  # Google's Turbo colour map, polynomial approximation (Mikhailov 2019): r, g, b coefficients
    (0.13572138, 4.61539260, -42.66032258, 132.13108234, -152.94239396, 59.28637943),
    (0.09140261, 2.19418839, 4.84296658, -14.18503333, 4.27729857, 2.82956604),
    (0.10667330, 12.64194608, -60.58204836, 110.36276771, -89.90310912, 27.34824973),
)


def colour_table(entries: int = 256) -> np.ndarray:
    """uint8 [entries, 3]: the Turbo colour map (blue → green → yellow → red) from 0 to 1."""
    x = np.linspace(0, 1, entries)
    channels = [sum(c * x**p for p, c in enumerate(coefficients)) for coefficients in _TURBO]
    return (np.clip(np.stack(channels, -1), 0, 1) * 255).round().astype(np.uint8)


TABLE = colour_table()


def heat_colours(values: np.ndarray) -> np.ndarray:
    """uint8 [..., 3] colours of values in [0, 1]."""
    return TABLE[(np.clip(values, 0, 1) * 255).round().astype(np.int64)]


def stretch(values: np.ndarray, low: float = 0.0) -> np.ndarray:
    """Max-normalised values shown from `low` (no colour, transparent) to 1 (the top colour, full opacity)."""
    return np.clip((values - low) / (1 - low), 0, 1) if low < 1 else np.zeros_like(values)


def display_low(grid: np.ndarray) -> float:
    """Where an overlay's colour scale starts: the grid's smallest value relative to its largest, so that a map's
    range fills the colours (a nearly flat map still shows where its peak is; its caption and colour bar say how
    flat it is)."""
    peak = float(grid.max())
    return float(grid.min()) / peak if peak > 0 else 0.0


def blend(pixels: np.ndarray, values: np.ndarray, opacity: float = DEFAULT_OPACITY, low: float = 0.0) -> np.ndarray:
    """uint8 RGB [H, W, 3]: the grey radiograph under the colour map of `stretch(values, low)` = t, each pixel's
    opacity = opacity · t (the map's minimum, and the margins outside the crop, leave the radiograph as it is)."""
    t = stretch(np.asarray(values, dtype=np.float64), low)
    grey = np.repeat(np.clip(pixels, 0, 1)[..., None] * 255, 3, axis=-1)
    alpha = (opacity * t)[..., None]
    return (grey * (1 - alpha) + heat_colours(t) * alpha).round().astype(np.uint8)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)  # Pillow's scalable font (needs FreeType)
    except (TypeError, OSError, AttributeError):
        return ImageFont.load_default()


def overlay_figure(pixels: np.ndarray, values: np.ndarray, title: str, subtitle: str,
                   opacity: float = DEFAULT_OPACITY, low: float = 0.0) -> Image.Image:
    """The overlay as a figure: the caption above, the blended image at the file's size, a colour bar right whose
    ticks are in units of the map's maximum, from `low` (the scale's start) to 1."""
    height, width = values.shape
    scale = max(0.6, max(height, width) / 640)
    big, small = _font(round(20 * scale)), _font(round(14 * scale))
    pad = round(10 * scale)
    caption = round(2 * pad + 20 * scale + 6 * scale + 14 * scale)
    label = "attention / max"
    bar_panel = max(round(84 * scale), round(ImageDraw.Draw(Image.new("L", (1, 1))).textlength(label, font=small)) + 2 * pad)
    figure = Image.new("RGB", (width + bar_panel, height + caption), (18, 18, 18))
    figure.paste(Image.fromarray(blend(pixels, values, opacity, low)), (0, caption))
    draw = ImageDraw.Draw(figure)
    draw.text((pad, pad), title, fill=(255, 255, 255), font=big)
    draw.text((pad, pad + round(26 * scale)), subtitle, fill=(190, 190, 190), font=small)
    # colour bar: the colours at full opacity over mid grey, the maximum at the top
    top, bottom = caption + 2 * pad, caption + height - 2 * pad
    left, right = width + pad, width + pad + round(18 * scale)
    ramp = np.linspace(1, 0, max(bottom - top, 2))
    colours = blend(np.full((len(ramp), 1), 0.5), ramp[:, None], 1.0)
    figure.paste(Image.fromarray(colours).resize((right - left, len(ramp)), Image.Resampling.NEAREST), (left, top))
    draw.rectangle((left - 1, top - 1, right, top + len(ramp)), outline=(200, 200, 200))
    for t in (1.0, 0.5, 0.0):
        y = top + round((1 - t) * (len(ramp) - 1))
        draw.line((right, y, right + round(4 * scale), y), fill=(200, 200, 200))
        draw.text((right + round(6 * scale), y), f"{low + t * (1 - low):.2f}", fill=(220, 220, 220), font=small, anchor="lm")
    draw.text((left, caption + pad // 2), label, fill=(190, 190, 190), font=small, anchor="lm")
    return figure


def entity_caption(image: ImageExplanation, entity: EntityExplanation) -> tuple[str, str]:
    return (f"{entity.name}: P(present) {entity.score:.2f}, predicted {entity.prediction}",
            f"{image.path.name}  ·  attention peak {entity.peak:.1f}x uniform")


def grey_png(pixels: np.ndarray, longest: int | None = None) -> Image.Image:
    image = Image.fromarray((np.clip(pixels, 0, 1) * 255).round().astype(np.uint8), mode="L")
    if longest is not None and max(image.size) > longest:
        scale = longest / max(image.size)
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                             Image.Resampling.BILINEAR)
    return image


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def slug(text: str, limit: int = 48) -> str:
    """A file-name-safe form: 'Pleural effusion' -> 'pleural-effusion'."""
    return _UNSAFE.sub("-", text.strip().lower()).strip("-.")[:limit] or "x"


def unique_ids(paths: Sequence[Path]) -> list[str]:
    """A folder name per image: its file stem, made unique with -2, -3, ... ."""
    seen: dict[str, int] = {}
    ids = []
    for path in paths:
        base = _UNSAFE.sub("-", Path(path).stem).strip("-.") or "image"
        seen[base] = seen.get(base, 0) + 1
        ids.append(base if seen[base] == 1 else f"{base}-{seen[base]}")
    return ids


def peak_position(grid: np.ndarray, box: CropBox) -> tuple[float, float]:
    """The file coordinates (y, x) of the centre of the grid's largest region."""
    r, c = np.unravel_index(int(np.argmax(grid)), grid.shape)
    return (box.top + (r + 0.5) * (box.bottom - box.top) / grid.shape[0],
            box.left + (c + 0.5) * (box.right - box.left) / grid.shape[1])


def shared_peak(entities: Sequence[EntityExplanation]) -> bool | None:
    """Whether every entity's map peaks at the same region (None for fewer than two): then the maps show where the
    model looks, not where each finding is. One image's case of `localization.shared_peaks`, its regions compared
    the same way, which measures it over a dataset."""
    if len(entities) < 2:
        return None
    return shared_peaks([np.stack([e.grid for e in entities])]) == 1.0


# Writing: maps, overlays and the manifest the viewer reads

MANIFEST = "explain.json"
MANIFEST_VERSION = 1
RADIOGRAPH = "radiograph.png"   # the viewer's copy of each image, grey, at most VIEWER_PIXELS on its longer side
VIEWER_PIXELS = 1024


def _grid_list(grid: np.ndarray) -> list[list[float]]:
    return [[round(float(v), 6) for v in row] for row in grid]


def write_explanations(images: Sequence[ImageExplanation], out: Path, report: str | None = None,
                       entity_names: Sequence[str] = (), **meta: object) -> dict:
    """Write each image's maps and overlays under `out/<image id>/` and `out/explain.json`; returns the manifest.

    Per image: `radiograph.png` (the viewer's copy), per entity `<entity>.png` (overlay figure) and `<entity>.npy`
    (float32 [H, W], max-normalised, the file's pixel coordinates), and with a report `words/<NNN>-<word>.npy` per
    word. The manifest keeps the scores, predictions, crop box, grids and relative file names (the viewer's data)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    manifest: dict = {"version": MANIFEST_VERSION, **meta, "entity_names": list(entity_names), "report": None, "images": []}
    if report is not None and images and images[0].words:
        manifest["report"] = {"text": report, "words": [
            {"index": w.index, "text": w.text, "span": list(w.span), "mapped": w.grid is not None} for w in images[0].words]}
    for image, folder in zip(images, unique_ids([i.path for i in images])):
        directory = out / folder
        (directory / "words" if image.words else directory).mkdir(parents=True, exist_ok=True)
        grey_png(image.pixels, VIEWER_PIXELS).save(directory / RADIOGRAPH)
        entry = {"id": folder, "file": str(image.path), "name": image.path.name, "size": list(image.size),
                 "crop": image.box.as_list(), "grid": list(image.entities[0].grid.shape if image.entities else ()),
                 "radiograph": f"{folder}/{RADIOGRAPH}",
                 "scores": {name: round(float(p), 6) for name, p in zip(entity_names, image.probabilities[:, PRESENT])},
                 "entities": [], "words": [], "shared_peak": shared_peak(image.entities)}
        used: set[str] = set()
        for entity in image.entities:
            stem = slug(entity.name)
            stem = stem if stem not in used else f"{stem}-{entity.index}"
            used.add(stem)
            values = image.file_map(entity.grid)
            np.save(directory / f"{stem}.npy", values)
            overlay_figure(image.pixels, values, *entity_caption(image, entity), low=display_low(entity.grid)).save(
                directory / f"{stem}.png")
            entry["entities"].append({
                "index": entity.index, "name": entity.name, "score": round(entity.score, 6),
                "probabilities": {NAMES[c]: round(float(p), 6) for c, p in enumerate(entity.probabilities)},
                "prediction": entity.prediction, "peak": round(entity.peak, 4),
                "overlay": f"{folder}/{stem}.png", "map": f"{folder}/{stem}.npy", "attention": _grid_list(entity.grid)})
            if not entry["grid"]:
                entry["grid"] = list(entity.grid.shape)
        for word in image.words:
            if word.grid is None:
                continue
            name = f"words/{word.index:03d}-{slug(word.text, 32)}.npy"
            np.save(directory / name, image.file_map(word.grid))
            entry["words"].append({"index": word.index, "text": word.text, "map": f"{folder}/{name}",
                                   "attention": _grid_list(word.grid)})
            if not entry["grid"]:
                entry["grid"] = list(word.grid.shape)
        manifest["images"].append(entry)
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return manifest

