"""Image encoders (ResNet, ConvNeXt, ViT, DINOv2 at toy sizes) and the batch image transform."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import ResNetConfig, ResNetModel

from encoders.image import ImageEncoder, ImageEncoderConfig
from encoders.transforms import ImageTransform, ImageTransformConfig, resize_to

CNN = dict(image_size=64, hidden_sizes=[8, 16], depths=[1, 1])
VIT = dict(image_size=32, patch_size=8, vit_hidden_size=16, vit_layers=2, vit_heads=2)


def encoder(**settings) -> ImageEncoder:
    torch.manual_seed(0)
    return ImageEncoder.from_config(ImageEncoderConfig(**settings), device="cpu").eval()


def pixels(channels: int = 1, size: int = 64, batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, channels, size, size, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("architecture", ["resnet", "convnext"])
def test_cnn_features_are_the_last_stage_and_its_pooled_output(architecture):
    model = encoder(architecture=architecture, **CNN)
    x = pixels()
    features = model(x)
    assert model.dim == 16 and features.grid == (8, 8) and features.attentions is None
    assert features.global_.shape == (2, 16) and features.local.shape == (2, 64, 16)
    out = model.model(pixel_values=x)
    assert torch.equal(features.local.view(2, 8, 8, 16), out.last_hidden_state.permute(0, 2, 3, 1))
    assert torch.equal(features.global_, out.pooler_output.flatten(1))


def test_an_earlier_stage_gives_both_feature_kinds_its_own_width():
    model = encoder(architecture="resnet", feature_stage=0, **CNN)
    features = model(pixels())
    assert model.dim == 8 and features.grid == (16, 16) and features.local.shape == (2, 256, 8)
    torch.testing.assert_close(features.global_, features.local.mean(dim=1))


@pytest.mark.parametrize("architecture", ["vit", "dinov2"])
def test_transformer_features_are_cls_patches_and_last_attentions(architecture):
    model = encoder(architecture=architecture, **VIT)
    features = model(pixels(size=32))
    tokens = model.model(pixel_values=pixels(size=32)).last_hidden_state
    assert model.dim == 16 and features.grid == (4, 4)
    assert torch.equal(features.global_, tokens[:, 0]) and torch.equal(features.local, tokens[:, 1:])
    assert features.attentions.shape == (2, 2, 17, 17)
    torch.testing.assert_close(features.attentions.sum(-1), torch.ones(2, 2, 17))


def test_round_trip_through_a_directory_gives_identical_outputs(tmp_path):
    for settings in (dict(architecture="convnext", **CNN), dict(architecture="vit", **VIT), dict(architecture="dinov2", **VIT)):
        model = encoder(**settings)
        model.save_pretrained(tmp_path / settings["architecture"])
        loaded = ImageEncoder.from_pretrained(tmp_path / settings["architecture"], device="cpu").eval()
        assert loaded.config == model.config
        x = pixels(size=settings["image_size"])
        assert torch.equal(loaded(x).local, model(x).local) and torch.equal(loaded(x).global_, model(x).global_)


def test_plain_transformers_directory_with_three_channels_takes_grayscale(tmp_path):
    torch.manual_seed(0)
    resnet = ResNetModel(ResNetConfig(num_channels=3, embedding_size=8, hidden_sizes=[8, 12, 16], depths=[1, 1, 1])).eval()
    resnet.save_pretrained(tmp_path)
    model = ImageEncoder.from_pretrained(tmp_path, device="cpu", image_size=64).eval()
    assert (model.config.architecture, model.config.hidden_sizes, model.config.channels) == ("resnet", [8, 12, 16], 1)
    x = pixels()
    assert torch.equal(model(x).global_, resnet(pixel_values=x.repeat(1, 3, 1, 1)).pooler_output.flatten(1))


def test_vit_checkpoint_runs_at_another_size_by_interpolating_positions(tmp_path):
    encoder(architecture="vit", **VIT).model.save_pretrained(tmp_path)  # a plain transformers ViT directory
    assert ImageEncoder.from_pretrained(tmp_path, device="cpu").config.image_size == 32  # the checkpoint's own
    model = ImageEncoder.from_pretrained(tmp_path, device="cpu", image_size=64)
    assert model(pixels(size=64)).local.shape == (2, 64, 16)


def test_gradient_checkpointing_gives_the_same_gradients():
    grads = []
    for checkpointing in (False, True):
        model = encoder(architecture="vit", gradient_checkpointing=checkpointing, **VIT).train()
        assert any(getattr(m, "gradient_checkpointing", False) for m in model.modules()) == checkpointing
        model(pixels(size=32)).local.square().sum().backward()
        grads.append(model.model.embeddings.patch_embeddings.projection.weight.grad)
    torch.testing.assert_close(grads[0], grads[1])
    with pytest.raises(ValueError, match="gradient_checkpointing"):
        encoder(architecture="resnet", gradient_checkpointing=True, **CNN)


def test_bad_configs_inputs_and_directories_are_named(tmp_path):
    with pytest.raises(ValueError, match="architecture"):
        ImageEncoderConfig(architecture="vgg")
    with pytest.raises(ValueError, match="feature_stage"):
        ImageEncoderConfig(feature_stage=4)
    with pytest.raises(ValueError, match="patch_size"):
        ImageEncoderConfig(architecture="vit", image_size=30, patch_size=8)
    model = encoder(architecture="vit", **VIT)
    with pytest.raises(ValueError, match=r"\[B, 1, 32, 32\]"):
        model(pixels(channels=3, size=32))
    with pytest.raises(ValueError, match=r"\[B, 1, 32, 32\]"):
        model(pixels(size=64))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ValueError, match=f"{tmp_path}.*'bert'"):
        ImageEncoder.from_pretrained(tmp_path)
    ResNetModel(ResNetConfig(num_channels=1, embedding_size=8, hidden_sizes=[8], depths=[1])).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="channels"):
        ImageEncoder.from_pretrained(tmp_path, channels=3)


def transform(**settings) -> ImageTransform:
    return ImageTransform(ImageTransformConfig(**{"image_size": 32, **settings}))


def test_training_transform_repeats_under_a_seed_and_evaluation_does_not_augment():
    images = torch.rand(4, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    steps = transform()
    torch.manual_seed(0)
    first = steps(images, train=True)
    torch.manual_seed(0)
    assert torch.equal(steps(images, train=True), first)
    assert not torch.equal(steps(images, train=True), first)  # the next draw differs
    twins = steps(images[:1].repeat(2, 1, 1, 1), train=True)
    assert not torch.equal(twins[0], twins[1])  # each image its own draws
    expected = (images - 0.5) / 0.25
    assert torch.equal(steps(images, train=False), expected)
    assert torch.equal(transform(augment=False)(images, train=True), expected)
    state = torch.random.get_rng_state()
    generated = [steps(images, True, torch.Generator().manual_seed(5)) for _ in range(2)]
    assert torch.equal(*generated) and torch.equal(torch.random.get_rng_state(), state)


def test_normalisation_and_explicit_channel_conversion():
    red = torch.zeros(1, 3, 32, 32)
    red[:, 0] = 1.0
    gray = transform(mean=[0.0], std=[1.0])(red, train=False)
    assert gray.shape == (1, 1, 32, 32)
    torch.testing.assert_close(gray, torch.full_like(gray, 0.299))  # luminance weights, not a channel mean
    rgb = transform(channels=3, mean=[0.5, 0.5, 0.25], std=[0.25, 0.5, 0.25])(torch.full((1, 1, 32, 32), 0.75), train=False)
    assert rgb[0, :, 0, 0].tolist() == [1.0, 0.5, 2.0]
    with pytest.raises(ValueError, match="mean"):
        ImageTransformConfig(channels=3, mean=[0.5, 0.5])
    with pytest.raises(ValueError, match=r"\[B, 1 or 3, H, W\]"):
        transform()(torch.rand(1, 2, 32, 32), train=False)


def test_resize_keeps_the_aspect_and_crops_the_centre():
    wide = torch.zeros(1, 1, 40, 80)
    wide[..., 10:70] = 1.0  # white but for a black band at each end
    out = resize_to(wide, 20)
    assert out.shape == (1, 1, 20, 20)
    assert out.min() > 0.99  # the crop is the white middle, not a squashed whole


@pytest.mark.parametrize("architecture", ["vit", "dinov2"])
def test_patch_dropout_runs_the_transformer_on_the_kept_tokens(architecture):
    model = encoder(architecture=architecture, **VIT)
    x = pixels(size=32, batch=3)
    torch.manual_seed(5)
    half = model(x, keep=0.5)
    assert half.local.shape == (3, 8, 16) and half.global_.shape == (3, 16) and half.attentions is None
    assert half.grid == (4, 4) and half.kept.shape == (3, 8)
    assert all(row.unique().numel() == 8 and torch.equal(row, row.sort().values) for row in half.kept)
    assert not all(torch.equal(half.kept[0], row) for row in half.kept[1:])  # each image its own draw
    torch.manual_seed(5)
    again = model(x, keep=0.5)  # the global RNG decides: a resumed run draws the same tokens
    assert torch.equal(again.kept, half.kept) and torch.equal(again.local, half.local)
    plain = model(x)
    assert plain.kept is None and torch.equal(model(x, keep=1.0).local, plain.local)
    # the shortened path itself, keeping every token, is the plain forward
    every = model._dropped_transformer_features(x, 1.0)
    torch.testing.assert_close(every.local, plain.local)
    torch.testing.assert_close(every.global_, plain.global_)
    # a kept token's features depend on the other kept tokens only: a patch left out changes nothing
    dropped = torch.ones(16, dtype=torch.bool)
    dropped[half.kept[0]] = False
    rows, cols = divmod(int(dropped.nonzero()[0]), 4)
    changed = x.clone()
    changed[0, :, rows * 8:(rows + 1) * 8, cols * 8:(cols + 1) * 8] += 10
    torch.manual_seed(5)
    assert torch.equal(model(changed, keep=0.5).local[0], half.local[0])


def test_patch_dropout_on_a_cnn_drops_regions_after_the_encoder():
    model = encoder(architecture="resnet", **CNN)
    x = pixels()
    plain = model(x)
    torch.manual_seed(0)
    quarter = model(x, keep=0.25)
    assert quarter.local.shape == (2, 16, 16) and quarter.kept.shape == (2, 16)
    assert torch.equal(quarter.global_, plain.global_)  # pooled over the whole map: nothing saved
    assert torch.equal(quarter.local, torch.stack([plain.local[b, quarter.kept[b]] for b in range(2)]))
    with pytest.raises(ValueError, match="keep"):
        model(x, keep=0.0)
