"""Text features of a whole report corpus computed once, for models whose text encoder is frozen.

With `model.text.trainable_layers: 0` the text encoder's output for a report never changes, so encoding
it at every step (most of a CPU step's time) is waste: the corpus is encoded once, kept on disk under
the cache directory (keyed by the encoder's fingerprint, its length limit and the texts), and each batch
takes its rows. The projections, decoder and losses above it train as before.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save
from torch import Tensor
from tqdm import tqdm

from encoders.text import TextEncoder, TextFeatures
from kg.atomic import atomic_open

VERSION = 1


@dataclass
class CorpusText:
    sentence: Tensor                      # [R, D] unit vectors
    words: Tensor                         # [sum of word counts, D], float16 to halve memory
    offsets: Tensor                       # [R + 1] each report's first row in `words`
    spans: list[list[tuple[int, int]]]    # each report's word spans

    def batch(self, rows: Sequence[int], device: torch.device) -> TextFeatures:
        """The features of reports `rows`, words padded to the longest, as `TextEncoder.features` gives them."""
        counts = [int(self.offsets[r + 1] - self.offsets[r]) for r in rows]
        width = max(counts, default=0)
        words = torch.zeros(len(rows), width, self.words.shape[1])
        for i, (r, n) in enumerate(zip(rows, counts)):
            words[i, :n] = self.words[self.offsets[r]:self.offsets[r + 1]].float()
        mask = torch.arange(width)[None, :] < torch.tensor(counts)[:, None]
        return TextFeatures(self.sentence[list(rows)].to(device), words.to(device), mask.to(device),
                            [[] for _ in rows], [self.spans[r] for r in rows])


@torch.no_grad()
def encode_corpus(encoder: TextEncoder, texts: Sequence[str], cache_dir: Path | None, batch_size: int = 64,
                  progress: bool = True) -> CorpusText:
    """Every text's features, read from `cache_dir` when this encoder has encoded these texts before."""
    key = hashlib.sha256(json.dumps([VERSION, encoder.fingerprint(), encoder.config.max_length, list(texts)]).encode())
    file = Path(cache_dir) / f"text-{key.hexdigest()[:20]}.safetensors" if cache_dir is not None else None
    if file is not None and file.is_file():
        tensors = load_file(str(file))
        spans = json.loads(file.with_suffix(".json").read_text())
        return CorpusText(tensors["sentence"], tensors["words"], tensors["offsets"], [[tuple(s) for s in r] for r in spans])
    was_training = encoder.training
    encoder.eval()
    sentences, words, counts, spans = [], [], [], []
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths pad little
    for start in tqdm(range(0, len(order), batch_size), desc="encoding reports", unit="batch", disable=not progress):
        rows = order[start:start + batch_size]
        features = encoder.features([texts[i] for i in rows])
        for i, row in enumerate(rows):
            n = int(features.word_mask[i].sum())
            sentences.append((row, features.sentence[i].float().cpu()))
            words.append((row, features.words[i, :n].half().cpu()))
            counts.append((row, n))
            spans.append((row, features.word_spans[i]))
    encoder.train(was_training)
    by_row = sorted(range(len(texts)), key=lambda i: order[i])
    sentence = torch.stack([sentences[i][1] for i in by_row]) if texts else torch.zeros(0, encoder.dim)
    word_rows = torch.cat([words[i][1] for i in by_row]) if texts else torch.zeros(0, encoder.dim, dtype=torch.half)
    offsets = torch.tensor([0] + [counts[i][1] for i in by_row]).cumsum(0)
    result = CorpusText(sentence, word_rows, offsets, [spans[i][1] for i in by_row])
    if file is not None:
        with atomic_open(file.with_suffix(".json")) as f:
            json.dump(result.spans, f)
        with atomic_open(file, "wb") as f:
            f.write(save({"sentence": sentence.contiguous(), "words": word_rows.contiguous(), "offsets": offsets}))
    return result
