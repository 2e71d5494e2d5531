"""Radiographs from PNG, JPEG or DICOM as one grayscale float tensor, and a uint8 cache of them for training.

Every format ends as float32 [1, H, W] in [0, 1], white = dense (bone), whatever its bit depth or photometric
interpretation, so that one normalisation downstream fits all datasets. Resizing is done on the float values
(a PIL "F" image), so 16-bit PNGs and DICOM keep their precision until the cache quantises to 8 bits.

Resize: PIL's BILINEAR, which PIL applies as an antialiased filter (its support widens with the reduction, like
torchvision's `antialias=True`), to a square size×size without keeping the aspect ratio (NIH images are square;
CheXpert and MIMIC are stretched by a few percent). BILINEAR rather than LANCZOS: Lanczos rings at sharp edges
(wires, devices, the film border), overshooting [0, 1]; at 224 px the sharpness it adds is not worth that.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from alignment.data.records import DatasetError, ImageRecord
from kg.atomic import atomic_open
from kg.problems import ProblemLog

log = logging.getLogger(__name__)

RESAMPLE = Image.Resampling.BILINEAR
CACHE_FORMAT = 1  # part of the cache key: bump when decoding or resizing changes
DICOM_SUFFIXES = (".dcm", ".dicom")


class ImageReadError(DatasetError):
    """An image file that cannot be decoded; `path` and `reason` are kept for the ProblemLog."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = Path(path)
        self.reason = reason


def read_image(path: Path, size: int | None = None) -> torch.Tensor:
    """float32 [1, H, W] in [0, 1] (or [1, size, size]); raises ImageReadError for a corrupt or unsupported file."""
    return torch.from_numpy(_pixels(Path(path), size))[None]


def _pixels(path: Path, size: int | None) -> np.ndarray:
    """read_image's pixels as float32 [H, W]; numpy throughout, so that the cache's decoding threads stay off torch."""
    pixels = _read_dicom(path) if path.suffix.lower() in DICOM_SUFFIXES else _read_pil(path)
    if size is not None:
        pixels = np.asarray(Image.fromarray(pixels).resize((size, size), RESAMPLE))  # float32 -> a PIL "F" image
    return np.clip(pixels, 0.0, 1.0).astype(np.float32, copy=False)


def _read_pil(path: Path) -> np.ndarray:
    """Pixels of a PNG or JPEG (any format Pillow reads) as float32 in [0, 1]; colour by ITU-R 601 luminance."""
    try:
        with Image.open(path) as image:
            image.load()
    except Exception as e:  # Pillow raises OSError, ValueError, SyntaxError, struct.error, ... for damaged files
        raise ImageReadError(path, f"not a readable image ({type(e).__name__}: {e})") from None
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit PNG (Pillow opens some as 32-bit "I", still 0..65535)
        return np.asarray(image, dtype=np.float32) / 65535.0
    if image.mode == "F":
        raise ImageReadError(path, "floating-point images have no known intensity range")
    return np.asarray(image.convert("L"), dtype=np.float32) / 255.0


def _read_dicom(path: Path) -> np.ndarray:
    """Modality LUT, then the file's VOI LUT or window (the first one), scaled to its output range; MONOCHROME1 inverted.

    Without a VOI LUT or window the image's own minimum and maximum are the range (no better one is recorded)."""
    import pydicom  # imported here: only DICOM inputs need it
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    try:
        ds = pydicom.dcmread(path)
        photometric = str(ds.get("PhotometricInterpretation", ""))
        if photometric not in ("MONOCHROME1", "MONOCHROME2"):
            raise ImageReadError(path, f"photometric interpretation {photometric or 'missing'}, expected MONOCHROME1/2")
        pixels = apply_modality_lut(ds.pixel_array, ds)
        if pixels.ndim != 2:
            raise ImageReadError(path, f"expected one frame, got pixel data of shape {pixels.shape}")
        if ds.get("VOILUTSequence") or "WindowCenter" in ds:
            pixels = apply_voi_lut(pixels, ds)
            # The VOI's output range: what it gives for the lowest and the highest possible input.
            low, high = apply_voi_lut(np.array([np.iinfo(np.int32).min, np.iinfo(np.int32).max]), ds)
            low, high = min(low, high), max(low, high)
        else:
            low, high = pixels.min(), pixels.max()
    except ImageReadError:
        raise
    except Exception as e:  # pydicom raises a dozen types for damaged files or missing decoders
        raise ImageReadError(path, f"not a readable DICOM image ({type(e).__name__}: {e})") from None
    scaled = (pixels.astype(np.float64) - low) / (high - low) if high > low else np.zeros(pixels.shape)
    if photometric == "MONOCHROME1":  # low values are white
        scaled = 1.0 - scaled
    return scaled.astype(np.float32)


@dataclass(frozen=True)
class ImageCache:
    """Decoded, resized images as one uint8 tensor [N, 1, S, S], so that training epochs never decode a file again.

    With a `cache_dir` the tensor is kept as `images-<size>-<key>.npz`, keyed by the records' paths, sizes and
    mtimes, the size and CACHE_FORMAT: a changed, added or removed file makes a new key. `workers` threads decode
    (Pillow and pydicom's numpy work release the GIL)."""

    workers: int = field(default_factory=lambda: min(8, os.cpu_count() or 1))

    def load(
        self,
        records: Sequence[ImageRecord],
        size: int,
        problems: ProblemLog,
        cache_dir: Path | None = None,
        progress: bool = True,
    ) -> tuple[torch.Tensor, list[ImageRecord]]:
        """(uint8 [N, 1, size, size], the N records kept, in order); unreadable images are reported and skipped.

        A cached result reports its skipped images again, so the ProblemLog says the same on every run."""
        started = time.perf_counter()
        file = Path(cache_dir) / f"images-{size}-{_cache_key(records, size)}.npz" if cache_dir is not None else None
        if file is not None and file.is_file():
            with np.load(file) as cached:
                pixels, kept, skipped = cached["images"], cached["kept"], json.loads(str(cached["skipped"]))
            source = f"cache {file}"
        else:
            pixels, kept, skipped = self._decode(records, size, progress)
            source = "decoded"
            if file is not None:
                with atomic_open(file, "wb") as stream:
                    np.savez(stream, images=pixels, kept=kept, skipped=np.array(json.dumps(skipped)))
        for path, reason in skipped:
            problems.report(path, None, "unreadable image", f"{reason}, skipped")
        log.info(
            "%d images at %d px (%s) in %.1f s, %d unreadable skipped",
            len(kept), size, source, time.perf_counter() - started, len(skipped),
        )  # fmt: skip
        return torch.from_numpy(pixels), [records[i] for i in kept.tolist()]

    def _decode(self, records: Sequence[ImageRecord], size: int, progress: bool) -> tuple[np.ndarray, np.ndarray, list[list[str]]]:
        pixels = np.empty((len(records), 1, size, size), dtype=np.uint8)
        ok = np.zeros(len(records), dtype=bool)
        skipped: list[list[str]] = []

        def decode(i: int) -> None:
            try:
                pixels[i, 0] = np.rint(_pixels(records[i].path, size) * 255.0)
                ok[i] = True
            except ImageReadError as e:
                skipped.append([str(e.path), e.reason])

        with ThreadPoolExecutor(self.workers) as pool:
            for _ in tqdm(pool.map(decode, range(len(records))), total=len(records), desc=f"decoding images ({size} px)",
                          unit=" images", mininterval=0.5, disable=not progress):  # fmt: skip
                pass
        kept = np.flatnonzero(ok)
        skipped.sort()
        return (pixels if len(kept) == len(records) else pixels[kept]), kept, skipped


def _cache_key(records: Sequence[ImageRecord], size: int) -> str:
    """Digest of what the cached tensor depends on; a file that is gone counts as (0, 0) and is skipped on decoding."""
    digest = hashlib.sha256(f"{CACHE_FORMAT}:{size}:{RESAMPLE.name}".encode())
    for record in records:
        try:
            stat = os.stat(record.path)
            mark = (stat.st_size, stat.st_mtime_ns)
        except OSError:
            mark = (0, 0)
        digest.update(f"\0{record.path}\0{mark[0]}\0{mark[1]}".encode())
    return digest.hexdigest()[:20]
