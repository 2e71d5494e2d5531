"""Gradient caching (`alignment.grad_cache`): the encoders run in chunks, the gradient is the full batch's.

The equality needs a model whose rows do not see each other inside the encoders: a ViT (LayerNorm, dropout
0) and the text encoder in eval mode, no BatchNorm (whose batch statistics differ between a chunk and the
batch; a BatchNorm CNN is checked for its running statistics only)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from alignment.config import LossConfig, ModelConfig, TextConfig
from alignment.grad_cache import concatenate, grad_cache_step, split_rows
from alignment.losses.kad import EntityDecoderConfig
from alignment.model import AlignmentModel
from alignment.objective import Inputs, Objective
from alignment.states import UNKNOWN
from encoders.image import ImageEncoder, ImageEncoderConfig
from encoders.text import TextEncoder
from tests.processes import join_gloo, run_processes

BATCH, ENTITIES, WORLD, TIMEOUT_S = 8, 5, 2, 120
TEXTS = ["FINDINGS: Small left pleural effusion. No pneumothorax.", "Heart size is enlarged.",
         "FINDINGS: No pleural effusion or pneumothorax. Heart size normal. IMPRESSION: No acute process.",
         "Right lower lobe consolidation, possibly pneumonia.", "Right apical pneumothorax.",
         "Bibasilar atelectasis. Small bilateral effusions, larger on the left than on the right side.",
         "Clear lungs.", "Mild cardiomegaly with pulmonary vascular congestion and small effusions."]
# every term that reads the encoders' outputs: global, word and region features, both decoder sides
LOSSES = LossConfig(clip=1.0, targets="hard", gloria_local=1.0, gloria_global=1.0, mgca_cta=1.0, prototype=0.5,
                    prototypes=6, entity_image=1.0, entity_text=1.0)
# under DDP GLoRIA's local term compares each process's own rows only (`alignment.losses.gloria`), so its
# gradient is not the one-process gradient even without gradient caching: left out of the DDP check
DDP_LOSSES = replace(LOSSES, gloria_local=0.0, gloria_global=0.0)


def objective(architecture: str = "vit", text_features: bool = False, decoder_dropout: float = 0.0,
              losses: LossConfig = LOSSES) -> Objective:
    torch.manual_seed(0)
    image = ImageEncoder.from_config(ImageEncoderConfig(
        architecture=architecture, image_size=32, patch_size=8, vit_hidden_size=16, vit_layers=2, vit_heads=2,
        hidden_sizes=[8, 16], depths=[1, 1]), device="cpu")
    text = TextEncoder.from_pretrained(device="cpu", max_length=32)
    config = ModelConfig(image=image.config, text=TextConfig(trainable_layers=0 if text_features else 1), embed_dim=8,
                         decoder=EntityDecoderConfig(dim=8, layers=1, heads=2, ffn=16, dropout=decoder_dropout))
    queries = torch.randn(ENTITIES, 12, generator=torch.Generator().manual_seed(2))
    model = AlignmentModel(config, [f"e{i}" for i in range(ENTITIES)], queries, image, text)
    return Objective(model, losses, None, None)


def inputs(model: Objective | None = None, keep: float = 1.0) -> Inputs:
    g = torch.Generator().manual_seed(1)
    states = torch.randint(0, 3, (BATCH, ENTITIES), generator=g).masked_fill(
        torch.rand(BATCH, ENTITIES, generator=g) < 0.3, UNKNOWN)
    features = None
    if model is not None:  # a frozen text encoder's features, as `TrainingData.cache_text` gives them
        with torch.no_grad():
            features = model.model.text_encoder.features(TEXTS)
    return Inputs(torch.randn(BATCH, 1, 32, 32, generator=g), list(TEXTS), states, states.roll(1, 0),
                  [[] for _ in TEXTS], keep, features)


def gradients(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}


def plain_step(module: Objective, batch: Inputs) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    module.zero_grad(set_to_none=True)
    terms = module(batch)
    terms["loss"].backward()
    return {k: v.detach() for k, v in terms.items()}, gradients(module)


def cached_step(module: Objective, batch: Inputs, chunk: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    module.zero_grad(set_to_none=True)
    terms = grad_cache_step(module, batch, chunk)
    return terms, gradients(module)


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float = 1e-5) -> None:
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=atol, rtol=1e-4, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("chunk", [1, 3, 8])
def test_chunked_gradient_equals_the_full_batch_gradient(chunk):
    module = objective().eval()  # no dropout anywhere: the chunks' passes compute what the batch's does
    batch = inputs()
    want_terms, want = plain_step(module, batch)
    terms, got = cached_step(module, batch, chunk)
    assert len(want) > 40 and "model.text_encoder.model.encoder.layer.5.output.dense.weight" in want  # both encoders train
    assert_same(terms, want_terms)
    assert_same(got, want)


def test_cached_text_features_and_uneven_word_padding():
    module = objective(text_features=True).eval()
    batch = inputs(module)
    parts = [split_rows(batch, slice(s, s + 3), BATCH) for s in range(0, BATCH, 3)]
    assert [len(p.texts) for p in parts] == [3, 3, 2] and parts[0].region_keep == batch.region_keep
    with torch.no_grad():  # chunks encoded alone pad their words to their own longest text, joined they are the batch's
        joined = concatenate([module.encode(split_rows(Inputs(batch.pixels, batch.texts, batch.image_states,
                                                                 batch.text_states, batch.mentions), slice(s, s + 3), BATCH))
                              for s in range(0, BATCH, 3)])
        whole = module.encode(Inputs(batch.pixels, batch.texts, batch.image_states, batch.text_states, batch.mentions))
    assert torch.equal(joined.text.word_mask, whole.text.word_mask)
    assert joined.text.word_spans == whole.text.word_spans
    torch.testing.assert_close(joined.text.words[joined.text.word_mask], whole.text.words[whole.text.word_mask])
    want_terms, want = plain_step(module, batch)
    terms, got = cached_step(module, batch, 3)
    assert_same(terms, want_terms)
    assert_same(got, want)


def test_patch_dropout_and_dropout_replay_the_same_draws():
    """In training mode the chunks draw their own dropout masks and kept patches, so only a single chunk
    matches the plain step; it does exactly, and leaves the RNG where the plain step leaves it."""
    module = objective(decoder_dropout=0.5).train()
    batch = inputs(keep=0.5)
    torch.manual_seed(3)
    want_terms, want = plain_step(module, batch)
    after_plain = torch.get_rng_state()
    torch.manual_seed(3)
    terms, got = cached_step(module, batch, BATCH)
    assert torch.equal(torch.get_rng_state(), after_plain)
    assert_same(terms, want_terms)
    assert_same(got, want)
    torch.manual_seed(3)
    terms, _ = cached_step(module, batch, 3)  # chunks of 3: other draws, a loss all the same
    assert torch.isfinite(terms["loss"])


def test_batch_norm_running_statistics_move_once_per_chunk():
    module = objective("resnet", text_features=True).train()
    norm = next(m for m in module.modules() if isinstance(m, torch.nn.BatchNorm2d))
    batch = inputs(module)
    grad_cache_step(module, batch, 3)
    assert int(norm.num_batches_tracked) == 3  # three chunks, the gradient-free pass undone
    with pytest.raises(ValueError, match="chunk"):
        grad_cache_step(module, batch, 0)


def worker(rank: int, port: int, want: dict[str, torch.Tensor]) -> None:
    torch.set_num_threads(1)
    join_gloo(rank, port, WORLD, TIMEOUT_S)
    try:
        module = objective(text_features=True, losses=DDP_LOSSES).eval()
        DistributedDataParallel(module)  # as training wraps it: the reducer must stay out of the cached step
        batch = inputs(module)
        half = split_rows(batch, slice(rank * BATCH // WORLD, (rank + 1) * BATCH // WORLD), BATCH)
        for _ in range(2):  # a second step: no reduction left pending by the first
            _, got = cached_step(module, half, 2)
        assert_same(got, want)
    finally:
        dist.destroy_process_group()


def test_two_processes_with_grad_cache_get_the_one_process_gradient():
    module = objective(text_features=True, losses=DDP_LOSSES).eval()
    _, want = plain_step(module, inputs(module))
    run_processes(worker, (want,), WORLD, TIMEOUT_S)
