"""An image encoder: a transformers ResNet, ConvNeXt, ViT or DINOv2, read out as one global vector per image
and a grid of local region vectors, the two feature kinds that global (CLIP) and local (GLoRIA, MGCA)
image-text alignment need.

Built from this module's config (randomly initialised, small by default: CPU-sized runs and tests) or loaded
from a local transformers directory: a user's RAD-DINO, DINOv2 or microsoft/resnet-50 copy, or a directory
written by `save_pretrained` (the model's own files plus `image_encoder.json`). Nothing is ever downloaded.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from transformers import (AutoConfig, AutoModel, ConvNextConfig, Dinov2Config, PretrainedConfig, PreTrainedModel, ResNetConfig,
                          ViTConfig)

from .device import resolve_device
from .text import quiet_loading, save_directory

CONFIG_NAME = "image_encoder.json"
CNNS = ("resnet", "convnext")
TRANSFORMERS = ("vit", "dinov2")
ARCHITECTURES = CNNS + TRANSFORMERS  # also the transformers model_type each is loaded by


@dataclass
class ImageEncoderConfig:
    """What to build. With `pretrained` set, the architecture and its sizes (`architecture`, `hidden_sizes`,
    `depths`, `vit_*`, `patch_size`) are the checkpoint's, whatever this config says."""
    architecture: str = "resnet"  # "resnet", "convnext", "vit" or "dinov2"
    pretrained: str = ""  # a local transformers model directory; "" builds from this config, randomly initialised
    channels: int = 1  # input channels: 1 for grayscale radiographs, 3 for RGB input
    image_size: int = 224  # input height and width
    hidden_sizes: list[int] = field(default_factory=lambda: [32, 64, 128, 256])  # CNN stage widths
    depths: list[int] = field(default_factory=lambda: [2, 2, 2, 2])  # CNN blocks per stage
    vit_hidden_size: int = 192
    vit_layers: int = 4
    vit_heads: int = 3
    patch_size: int = 16
    feature_stage: int = -1  # the CNN stage whose feature map gives the local regions; -1 the last
    gradient_checkpointing: bool = False  # recompute activations in the backward pass (ViT and DINOv2 only)

    def __post_init__(self) -> None:
        self.hidden_sizes, self.depths = list(self.hidden_sizes), list(self.depths)  # tuples from code, lists from JSON
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture: unknown {self.architecture!r}; one of {ARCHITECTURES}")
        if self.channels not in (1, 3):
            raise ValueError(f"channels: 1 (grayscale) or 3 (RGB), got {self.channels}")
        if self.image_size < 1:
            raise ValueError(f"image_size must be positive, got {self.image_size}")
        if self.architecture in CNNS:
            if not self.hidden_sizes or len(self.hidden_sizes) != len(self.depths):
                raise ValueError(f"hidden_sizes and depths: one entry per stage each, got {self.hidden_sizes} and {self.depths}")
            if min(self.hidden_sizes + self.depths) < 1:
                raise ValueError(f"hidden_sizes and depths must be positive, got {self.hidden_sizes} and {self.depths}")
            if not -len(self.hidden_sizes) <= self.feature_stage < len(self.hidden_sizes):
                raise ValueError(f"feature_stage: a stage index of {len(self.hidden_sizes)} stages "
                                 f"(negative from the last), got {self.feature_stage}")
        else:
            if self.vit_hidden_size % self.vit_heads:
                raise ValueError(f"vit_hidden_size ({self.vit_hidden_size}) must be a multiple of vit_heads ({self.vit_heads})")
            if self.image_size % self.patch_size:
                raise ValueError(f"image_size ({self.image_size}) must be a multiple of patch_size ({self.patch_size})")


@dataclass
class ImageFeatures:
    """A batch's global and local image features (`ImageEncoder.forward`); neither is normalised.

    After patch dropout (`keep` < 1) `local` holds only the kept regions: `kept` [B, n] gives, per image, the
    row-major grid position of each (ascending), `grid` is still the whole grid's shape, and the spatial
    layout `local.view(B, h, w, D)` no longer applies (n < h * w, so that view fails rather than misleads).
    `kept` is None when every region is there, in grid order."""
    global_: Tensor  # [B, D] one vector per image
    local: Tensor  # [B, N, D] region vectors, row-major over the grid: N = h * w (or n kept, see `kept`)
    grid: tuple[int, int]  # (h, w): local.view(B, h, w, D) is the spatial layout when `kept` is None
    attentions: Tensor | None  # ViT and DINOv2: the last layer's attention probabilities [B, heads, 1 + N, 1 + N]; else None
    kept: Tensor | None = None  # [B, n] long: the grid positions `local` holds after patch dropout; None: all of them


class ImageEncoder(nn.Module):
    """Pixels [B, channels, image_size, image_size], already normalised (`encoders.transforms`), to
    `ImageFeatures`.

    CNNs: `local` is the `feature_stage` map flattened. `global_` is the model's pooled output when that stage
    is the last (ResNet: the average pool; ConvNeXt: the average pool after its final LayerNorm), else the
    average pool of that same stage: global and local features then have one width, `dim`, without a
    projection that would be trained from scratch. ViT and DINOv2: `global_` is the CLS token and `local` the
    patch tokens, both after the final LayerNorm (ViT's tanh pooler is left out: self-supervised checkpoints
    such as DINO do not train it).

    A checkpoint with 3 input channels under a 1-channel config sees each grayscale image repeated to RGB,
    which is what an RGB-pretrained model saw of a radiograph converted to RGB."""

    def __init__(self, config: ImageEncoderConfig, model: PreTrainedModel) -> None:
        super().__init__()
        channels = model.config.num_channels
        if channels != config.channels and (channels, config.channels) != (3, 1):
            raise ValueError(f"channels: the model takes {channels}-channel images, the config gives {config.channels}")
        if config.gradient_checkpointing:
            if not model.supports_gradient_checkpointing:
                raise ValueError(f"gradient_checkpointing: {type(model).__name__} does not support it; "
                                 f"architectures that do: {TRANSFORMERS}")
            # `activation_checkpointing_enable` is transformers 5's name for the deprecated `gradient_checkpointing_enable`
            (getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable)()
        self.config, self.model = config, model
        self.repeat_gray = channels == 3 and config.channels == 1

    @classmethod
    def from_config(cls, config: ImageEncoderConfig, device: str | torch.device | None = None) -> ImageEncoder:
        """The encoder `config` describes: `config.pretrained`'s weights, else a randomly initialised model."""
        if config.pretrained:
            model_config = _checkpoint_config(Path(config.pretrained))
            config = replace(config, **_shape_of(model_config))
            with quiet_loading():
                model = AutoModel.from_pretrained(config.pretrained, config=model_config, local_files_only=True,
                                                  **_model_options(config.architecture))
        else:
            model = AutoModel.from_config(_model_config(config), **_model_options(config.architecture))
        return cls(config, model).to(resolve_device(device))

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str | torch.device | None = None,
                        **overrides: Any) -> ImageEncoder:
        """The encoder in a local directory: one written by `save_pretrained`, or a plain transformers model
        directory (then `image_size` defaults to a ViT's or DINOv2's own); `overrides` are config fields."""
        directory = Path(directory)
        model_config = _checkpoint_config(directory)
        settings = {**_saved_settings(directory), **overrides}
        if model_config.model_type in TRANSFORMERS:
            settings.setdefault("image_size", model_config.image_size)
        return cls.from_config(ImageEncoderConfig(**{**settings, **_shape_of(model_config), "pretrained": str(directory)}),
                               device)

    def save_pretrained(self, directory: str | Path) -> None:
        """Write the model's files and `image_encoder.json` into `directory`, each file complete or not at all;
        other files there (a training run's checkpoint and log) are left alone."""
        settings = {k: v for k, v in asdict(self.config).items() if k != "pretrained"}

        def write(built: Path) -> None:
            self.model.save_pretrained(built)
            (built / CONFIG_NAME).write_text(json.dumps(settings, indent=2))

        save_directory(Path(directory), write, CONFIG_NAME)
        self.config = replace(self.config, pretrained=str(directory))

    @property
    def dim(self) -> int:
        """Width of `global_` and `local`: the chosen stage's width for CNNs, the hidden size for ViT and DINOv2."""
        if self.config.architecture in CNNS:
            return self.model.config.hidden_sizes[self.config.feature_stage]
        return self.model.config.hidden_size

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def forward(self, pixels: Tensor, keep: float = 1.0) -> ImageFeatures:
        """`keep` < 1 is patch dropout (FLIP; BiomedCLIP trains with it): each image keeps a random `keep`
        share of its regions (at least one), drawn from torch's global RNG (a resumed run draws the same).
        ViT and DINOv2 drop patch tokens after the embedding (position embeddings added) and run the
        transformer layers on the CLS token and the kept patches only, which is where the saving comes from;
        `global_` is then the CLS token of that shorter sequence and `attentions` is None. CNNs see the whole
        image and drop regions from `local` afterwards (no compute saved; `global_` pools all regions).
        Evaluation keeps everything (`keep` = 1, the default, is exactly the plain forward)."""
        size, channels = self.config.image_size, self.config.channels
        if pixels.dim() != 4 or pixels.shape[1:] != (channels, size, size):
            raise ValueError(f"pixels: expected [B, {channels}, {size}, {size}] (channels, image_size), got {list(pixels.shape)}")
        if not 0 < keep <= 1:
            raise ValueError(f"keep: the share of regions kept, in (0, 1], got {keep}")
        if self.repeat_gray:
            pixels = pixels.expand(-1, 3, -1, -1)
        if self.config.architecture in CNNS:
            features = self._cnn_features(pixels)
            if keep == 1:
                return features
            kept = kept_positions(features.local.shape[0], features.local.shape[1], keep, features.local.device)
            return replace(features, local=_take(features.local, kept), kept=kept)
        if keep == 1:
            return self._transformer_features(pixels)
        return self._dropped_transformer_features(pixels, keep)

    def _cnn_features(self, pixels: Tensor) -> ImageFeatures:
        out = self.model(pixel_values=pixels, output_hidden_states=True)
        stages = out.hidden_states[1:]  # the first is the stem's output
        stage = self.config.feature_stage % len(stages)
        features = stages[stage]  # [B, D, h, w]
        pooled = out.pooler_output.flatten(1) if stage == len(stages) - 1 else features.mean(dim=(2, 3))
        return ImageFeatures(global_=pooled, local=features.flatten(2).transpose(1, 2),
                             grid=(features.shape[2], features.shape[3]), attentions=None)

    def _transformer_features(self, pixels: Tensor) -> ImageFeatures:
        options = {}
        if self.config.architecture == "vit" and self.config.image_size != self.model.config.image_size:
            options["interpolate_pos_encoding"] = True  # DINOv2 always interpolates its position embeddings
        out = self.model(pixel_values=pixels, output_attentions=True, **options)
        side = self.config.image_size // self.model.config.patch_size
        tokens = out.last_hidden_state
        return ImageFeatures(global_=tokens[:, 0], local=tokens[:, 1:], grid=(side, side), attentions=out.attentions[-1])

    def _dropped_transformer_features(self, pixels: Tensor, keep: float) -> ImageFeatures:
        """The transformer's own steps (`ViTModel.forward`, `Dinov2Model.forward`: embeddings, layers, final
        LayerNorm) with the patch tokens cut to the kept ones between the embeddings and the first layer."""
        model = self.model
        pixels = pixels.to(model.embeddings.patch_embeddings.projection.weight.dtype)
        if self.config.architecture == "vit":
            interpolate = self.config.image_size != model.config.image_size
            tokens = model.embeddings(pixels, interpolate_pos_encoding=interpolate)
            layers = model.layers
        else:
            tokens = model.embeddings(pixels)
            layers = model.encoder.layer
        batch, count = tokens.shape[0], tokens.shape[1] - 1
        kept = kept_positions(batch, count, keep, tokens.device)
        tokens = torch.cat([tokens[:, :1], _take(tokens[:, 1:], kept)], dim=1)
        for layer in layers:  # no attention mask: every image keeps as many tokens
            tokens = layer(tokens, None)
        tokens = model.layernorm(tokens)
        side = self.config.image_size // model.config.patch_size
        return ImageFeatures(global_=tokens[:, 0], local=tokens[:, 1:], grid=(side, side), attentions=None, kept=kept)


def kept_positions(batch: int, count: int, keep: float, device: torch.device) -> Tensor:
    """[batch, n] ascending positions out of `count`, a random n = max(1, round(keep * count)) per row (one
    `torch.rand` draw on `device`'s global generator)."""
    n = max(1, round(count * keep))
    return torch.rand(batch, count, device=device).argsort(dim=1)[:, :n].sort(dim=1).values


def _take(x: Tensor, positions: Tensor) -> Tensor:
    """Rows `positions` [B, n] of each x[b] [N, D]: [B, n, D]."""
    return x.gather(1, positions[..., None].expand(-1, -1, x.shape[-1]))


def _model_config(config: ImageEncoderConfig) -> PretrainedConfig:
    """The transformers config of a model built from `config`. A ResNet from config has basic blocks (as
    ResNet-18/34): at these widths the bottleneck's 4x channel reduction would leave a handful of channels."""
    if config.architecture == "resnet":
        return ResNetConfig(num_channels=config.channels, embedding_size=config.hidden_sizes[0], layer_type="basic",
                            hidden_sizes=config.hidden_sizes, depths=config.depths)
    if config.architecture == "convnext":
        return ConvNextConfig(num_channels=config.channels, hidden_sizes=config.hidden_sizes, depths=config.depths,
                              num_stages=len(config.depths), image_size=config.image_size)
    sizes = dict(num_channels=config.channels, image_size=config.image_size, patch_size=config.patch_size,
                 hidden_size=config.vit_hidden_size, num_hidden_layers=config.vit_layers,
                 num_attention_heads=config.vit_heads)
    if config.architecture == "vit":
        return ViTConfig(intermediate_size=4 * config.vit_hidden_size, **sizes)
    return Dinov2Config(**sizes)


def _model_options(architecture: str) -> dict[str, Any]:
    """Transformers are built with eager attention, the implementation that can return attention
    probabilities; a ViT without its pooler (see `ImageEncoder`)."""
    if architecture == "vit":
        return {"attn_implementation": "eager", "add_pooling_layer": False}
    if architecture == "dinov2":
        return {"attn_implementation": "eager"}
    return {}


def _shape_of(model_config: PretrainedConfig) -> dict[str, Any]:
    """The config fields a checkpoint fixes."""
    if model_config.model_type in CNNS:
        return {"architecture": model_config.model_type, "hidden_sizes": list(model_config.hidden_sizes),
                "depths": list(model_config.depths)}
    return {"architecture": model_config.model_type, "vit_hidden_size": model_config.hidden_size,
            "vit_layers": model_config.num_hidden_layers, "vit_heads": model_config.num_attention_heads,
            "patch_size": model_config.patch_size}


def _checkpoint_config(directory: Path) -> PretrainedConfig:
    path = directory / "config.json"
    if not path.is_file():
        raise ValueError(f"{directory}: no config.json, not a transformers model directory")
    model_type = json.loads(path.read_text()).get("model_type")
    if model_type not in ARCHITECTURES:
        raise ValueError(f"{directory}: model_type {model_type!r} is not an image encoder medkg loads; one of {ARCHITECTURES}")
    return AutoConfig.from_pretrained(directory, local_files_only=True)


def _saved_settings(directory: Path) -> dict[str, Any]:
    return json.loads((directory / CONFIG_NAME).read_text()) if (directory / CONFIG_NAME).exists() else {}
