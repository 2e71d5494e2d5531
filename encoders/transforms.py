"""Batch preprocessing and augmentation of images as tensors, on whatever device the batch is on (kornia).

A batch goes: channels made `channels` -> shorter side resized to `image_size` and centre-cropped square
-> in training, random crop, rotation and brightness/contrast -> normalised by `mean` and `std`.

Grayscale is explicit: an RGB batch under a 1-channel config becomes luminance (ITU-R 601 weights, as
PIL's "L" mode), a grayscale batch under a 3-channel config is repeated to R = G = B; nothing else is
accepted. No horizontal flip by default: on a chest radiograph the heart's side is anatomy, not noise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import kornia
import kornia.augmentation as K
import torch
from torch import Tensor, nn


@dataclass
class ImageTransformConfig:
    image_size: int = 224
    channels: int = 1  # what the encoder takes: 1 grayscale, 3 RGB
    mean: list[float] = field(default_factory=lambda: [0.5])  # one per channel, or one for all
    std: list[float] = field(default_factory=lambda: [0.25])  # MedCLIP: 0.586 / 0.2795; ImageNet weights: ImageNet's three
    augment: bool = True  # random crop, rotation, brightness and contrast in training; never in evaluation
    crop_scale: list[float] = field(default_factory=lambda: [0.8, 1.0])  # area fraction of a random crop, min and max
    rotation_degrees: float = 10.0  # rotation drawn from [-d, d]
    brightness: float = 0.2  # brightness factor drawn from [1 - b, 1 + b]
    contrast: float = 0.2  # contrast factor drawn from [1 - c, 1 + c]
    horizontal_flip: bool = False

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise ValueError(f"channels: 1 (grayscale) or 3 (RGB), got {self.channels}")
        if self.image_size < 1:
            raise ValueError(f"image_size must be positive, got {self.image_size}")
        for name in ("mean", "std"):
            if len(getattr(self, name)) not in (1, self.channels):
                raise ValueError(f"{name}: 1 or {self.channels} (channels) values, got {getattr(self, name)}")
        if min(self.std) <= 0:
            raise ValueError(f"std must be positive, got {self.std}")
        if len(self.crop_scale) != 2 or not 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1:
            raise ValueError(f"crop_scale: [min, max] with 0 < min <= max <= 1, got {self.crop_scale}")
        if self.rotation_degrees < 0:
            raise ValueError(f"rotation_degrees must be >= 0, got {self.rotation_degrees}")
        for name in ("brightness", "contrast"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name}: a factor range half-width in [0, 1), got {getattr(self, name)}")


class ImageTransform(nn.Module):
    """Float images [B, 1 or 3, H, W] in [0, 1] to normalised encoder input [B, channels, image_size, image_size].

    Augmentations draw from torch's global random generator (each image its own draws), so
    `torch.manual_seed` makes a run repeat; a `generator` passed to `forward` makes a call repeat without
    touching the global generator."""

    def __init__(self, config: ImageTransformConfig) -> None:
        super().__init__()
        self.config = config
        size = (config.image_size, config.image_size)
        steps: list[nn.Module] = [K.RandomResizedCrop(size, scale=tuple(config.crop_scale), same_on_batch=False)]
        if config.rotation_degrees:
            steps.append(K.RandomRotation(config.rotation_degrees, same_on_batch=False, p=1.0))
        if config.brightness or config.contrast:
            steps.append(K.ColorJitter(brightness=config.brightness, contrast=config.contrast, same_on_batch=False, p=1.0))
        if config.horizontal_flip:
            steps.append(K.RandomHorizontalFlip(same_on_batch=False))
        self.augmentation = K.AugmentationSequential(*steps)

    def forward(self, images: Tensor, train: bool, generator: torch.Generator | None = None) -> Tensor:
        if images.dim() != 4 or images.shape[1] not in (1, 3) or not images.is_floating_point():
            raise ValueError(f"images: expected a float batch [B, 1 or 3, H, W] in [0, 1], "
                             f"got {images.dtype} {list(images.shape)}")
        images = resize_to(to_channels(images, self.config.channels), self.config.image_size)
        if train and self.config.augment:
            if generator is None:
                images = self.augmentation(images)
            else:
                with torch.random.fork_rng(devices=[]):  # kornia draws its parameters on the CPU generator
                    torch.manual_seed(int(torch.randint(2**62, (), generator=generator, device=generator.device)))
                    images = self.augmentation(images)
            images = images.clamp(0, 1)  # rotation and jitter can step outside [0, 1]
        mean = torch.tensor(self.config.mean, device=images.device, dtype=images.dtype).view(1, -1, 1, 1)
        std = torch.tensor(self.config.std, device=images.device, dtype=images.dtype).view(1, -1, 1, 1)
        return (images - mean) / std


def to_channels(images: Tensor, channels: int) -> Tensor:
    """[B, 1 or 3, H, W] as [B, channels, H, W]: RGB to gray by luminance, gray to RGB by repetition."""
    if images.shape[1] == channels:
        return images
    if channels == 1:
        return kornia.color.rgb_to_grayscale(images)
    return images.expand(-1, 3, -1, -1)


def resize_to(images: Tensor, size: int) -> Tensor:
    """[B, C, size, size]: the shorter side resized to `size` (antialiased when shrinking), the longer one
    centre-cropped, so that no image is stretched."""
    height, width = images.shape[-2:]
    if min(height, width) != size:
        images = kornia.geometry.resize(images, size, side="short", antialias=True)
        height, width = images.shape[-2:]
    top, left = (height - size) // 2, (width - size) // 2
    return images[..., top:top + size, left:left + size]
