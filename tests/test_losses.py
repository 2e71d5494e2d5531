"""The alignment losses on small hand-made batches: values, invariances, shapes and gradients."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from alignment.losses import (
    ClipLoss,
    EntityDecoder,
    EntityDecoderConfig,
    EntityLoss,
    EntityRegionContrast,
    GloriaLoss,
    KnowledgeClipLoss,
    KnowledgePrototypes,
    MedClipLoss,
    TokenAlignmentLoss,
    anchor_penalty,
    semantic_targets,
    sinkhorn,
)
from alignment.states import ABSENT, PRESENT, UNCERTAIN, UNKNOWN
from alignment.targets import (
    StateAgreement,
    agreement_scores,
    expand_states,
    knowledge_targets,
    knowledge_word_weights,
    state_evidence,
)

P, A, U, N = PRESENT, ABSENT, UNCERTAIN, UNKNOWN


def unit(*shape: int, seed: int = 0) -> torch.Tensor:
    return F.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed)), dim=-1)


# ---------------------------------------------------------------- CLIP

def test_clip_loss_equals_hand_computed_value():
    image = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    text = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    # s = 1: image→text logits [[1, .6], [0, .8]], text→image logits [[1, 0], [.6, .8]]
    i2t = (math.log(1 + math.exp(-0.4)) + math.log(1 + math.exp(-0.8))) / 2
    t2i = (math.log(1 + math.exp(-1.0)) + math.log(1 + math.exp(-0.2))) / 2
    loss = ClipLoss()(image, text, torch.tensor(0.0))
    assert loss.item() == pytest.approx((i2t + t2i) / 2, abs=1e-6)


def test_clip_loss_scale_is_clamped_at_100():
    image, text = unit(4, 8), unit(4, 8, seed=1)
    at_100 = ClipLoss()(image, text, torch.tensor(math.log(100)))
    assert ClipLoss()(image, text, torch.tensor(10.0)).item() == pytest.approx(at_100.item(), abs=1e-6)


def test_perfect_alignment_gives_low_loss():
    x = unit(8, 16)
    assert ClipLoss()(x, x, torch.tensor(math.log(100))).item() < 1e-3
    assert ClipLoss()(x, unit(8, 16, seed=3), torch.tensor(math.log(100))).item() > 1.0


def test_identity_soft_targets_reproduce_hard_clip():
    image, text, scale = unit(6, 8), unit(6, 8, seed=1), torch.tensor(2.5)
    eye = torch.eye(6)
    assert ClipLoss()(image, text, scale, eye, eye).item() == pytest.approx(ClipLoss()(image, text, scale).item(), abs=1e-6)
    with pytest.raises(ValueError):
        ClipLoss()(image, text, scale, eye)


def test_clip_loss_runs_in_float32_under_autocast():
    image, text = unit(4, 8).requires_grad_(), unit(4, 8, seed=1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = ClipLoss()(image, text, torch.tensor(2.0))
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(ClipLoss()(image, text, torch.tensor(2.0)).item(), abs=1e-6)


# ---------------------------------------------------------------- MedCLIP and knowledge targets

def test_state_agreement_table():
    states = torch.tensor([[P], [A], [U], [N]])
    evidence = state_evidence(states)
    scores = agreement_scores(*evidence, *evidence, StateAgreement())
    expected = torch.tensor([[1, -1, 0, 0], [-1, 0, -0.5, 0], [0, -0.5, -0.25, 0], [0, 0, 0, 0]])
    assert torch.allclose(scores, expected)
    weighted = agreement_scores(*evidence, *evidence, StateAgreement(absent=0.5))  # shared negatives, when asked for
    assert weighted[1, 1] == 0.5 and weighted[1, 2] == -0.25


def test_shared_negatives_do_not_outweigh_a_shared_finding():
    # an exhaustively labelled image with one finding, against a normal report (13 absent) and a report of its finding
    images = torch.tensor([[P] + [A] * 13, [N] * 14])
    reports = torch.tensor([[A] * 14, [P] + [N] * 13])
    y = semantic_targets(images, reports, temperature=0.5)
    assert y[0, 1] > y[0, 0]


def test_semantic_targets_uncertain_is_not_agreement():
    # image 0 uncertain; report 0 uncertain too, report 1 present. MedCLIP's −1·−1 = +1 would favour report 0.
    image = torch.tensor([[U], [P]])
    text = torch.tensor([[U], [P]])
    y = semantic_targets(image, text)
    assert y[0, 0] <= y[0, 1]
    reference = F.softmax(torch.tensor([[-1.0], [1.0]]) @ torch.tensor([[-1.0], [1.0]]).T, dim=1)
    assert reference[0, 0] > reference[0, 1]  # the reference's behaviour, which these targets do not share
    assert torch.allclose(y.sum(1), torch.ones(2))


def test_semantic_targets_present_against_absent_is_disagreement():
    image = torch.tensor([[P, N], [A, A], [N, P]])
    text = torch.tensor([[P, N], [N, P], [A, N]])  # report 2 negates image 0's finding; report 1 is unrelated
    y = semantic_targets(image, text, temperature=0.5)
    assert y[0, 0] > y[0, 1] > y[0, 2]
    assert torch.allclose(y.sum(1), torch.ones(3))


def test_rows_without_information_fall_back_to_their_pair():
    image = torch.tensor([[N, N], [P, N], [N, P]])
    text = torch.tensor([[P, N], [P, N], [N, N]])
    y = semantic_targets(image, text)
    assert torch.equal(y[0], torch.tensor([1.0, 0, 0]))       # the image states nothing
    assert torch.equal(y[2], torch.tensor([0, 0, 1.0]))       # no report states entity 1
    assert y[1, 0] == pytest.approx(y[1, 1].item())           # equal labels, equal mass
    assert y[1, 0] > y[1, 2]


HYDRO, PNEUMO, CARDIO = 0, 1, 2
SIMILARITY = torch.tensor([[1.0, 1.0, 0.0],    # hydropneumothorax IS_A pneumothorax
                           [0.3, 1.0, 0.0],
                           [0.0, 0.0, 1.0]])


def test_knowledge_targets_follow_the_hierarchy():
    image = torch.tensor([[P, N, N], [N, N, P], [N, P, N]])
    text = torch.tensor([[N, P, N], [N, N, P], [P, N, N]])  # report 0: pneumothorax; report 1: cardiomegaly
    y = knowledge_targets(image, text, SIMILARITY, temperature=0.5)
    assert y[0, 0] > y[0, 1]
    plain = semantic_targets(image, text)
    assert plain[0, 0] == pytest.approx(plain[0, 1].item())  # without the graph both share nothing with image 0
    assert torch.allclose(y.sum(1), torch.ones(3))
    # the identity similarity gives MedCLIP-style targets exactly
    assert torch.allclose(knowledge_targets(image, text, torch.eye(3), 0.5), semantic_targets(image, text, 0.5))


def test_expand_states_keeps_stated_entities_and_halves_uncertain():
    states = torch.tensor([[P, A, N], [U, N, N]])
    soft = expand_states(states, SIMILARITY)
    assert torch.allclose(soft, torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0]]))


def test_medclip_and_knowledge_losses_use_both_directions():
    image, text, scale = unit(3, 8), unit(3, 8, seed=1), torch.tensor(2.0)
    image_states = torch.tensor([[P, N, N], [N, N, P], [N, P, A]])
    text_states = torch.tensor([[N, P, N], [N, N, P], [P, A, N]])
    loss = MedClipLoss(temperature=0.5)(image, text, scale, image_states, text_states)
    expected = ClipLoss()(image, text, scale, semantic_targets(image_states, text_states, 0.5),
                          semantic_targets(text_states, image_states, 0.5))
    assert loss.item() == pytest.approx(expected.item(), abs=1e-6)
    knowledge = KnowledgeClipLoss(SIMILARITY, temperature=0.5)(image, text, scale, image_states, text_states)
    assert knowledge.item() != pytest.approx(loss.item(), abs=1e-4)


def test_knowledge_word_weights():
    concept = torch.tensor([[True, False, False, False]])
    mask = torch.tensor([[True, True, True, False]])
    weights = knowledge_word_weights(concept, mask, concept_weight=4.0)
    assert torch.allclose(weights, torch.tensor([[2.0, 0.5, 0.5, 0.0]]))
    assert torch.allclose(knowledge_word_weights(concept, mask, 1.0), mask.float())


# ---------------------------------------------------------------- GLoRIA

def gloria_batch(batch: int = 3, length: int = 5, regions: int = 6, dim: int = 8):
    g = torch.Generator().manual_seed(0)
    words = torch.randn(batch, length, dim, generator=g, requires_grad=True)
    mask = torch.ones(batch, length, dtype=torch.bool)
    mask[0, 3:] = False
    mask[2, 4:] = False
    region = torch.randn(batch, regions, dim, generator=g, requires_grad=True)
    return words, mask, region, torch.randn(batch, dim, generator=g), torch.randn(batch, dim, generator=g)


def test_gloria_chunked_equals_unchunked():
    words, mask, regions, image, text = gloria_batch()
    whole = GloriaLoss()(words, mask, regions, image, text)
    grads = torch.autograd.grad(whole["loss"], (words, regions))
    chunked = GloriaLoss(max_elements=1)(words, mask, regions, image, text)  # one image per chunk
    chunked_grads = torch.autograd.grad(chunked["loss"], (words, regions))
    assert chunked["loss"].item() == pytest.approx(whole["loss"].item(), abs=1e-6)
    assert torch.allclose(chunked["attention"], whole["attention"], atol=1e-6)
    for a, b in zip(grads, chunked_grads, strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def test_gloria_uniform_word_weights_equal_unweighted_and_weights_matter():
    words, mask, regions, image, text = gloria_batch()
    loss = GloriaLoss()(words, mask, regions, image, text)["local"]
    uniform = GloriaLoss()(words, mask, regions, image, text, word_weights=torch.ones(mask.shape))["local"]
    assert uniform.item() == pytest.approx(loss.item(), abs=1e-6)
    concept = torch.zeros(mask.shape, dtype=torch.bool)
    concept[:, 0] = True
    weighted = GloriaLoss()(words, mask, regions, image, text, knowledge_word_weights(concept, mask, 5.0))["local"]
    assert weighted.item() != pytest.approx(loss.item(), abs=1e-4)


def test_gloria_padding_words_are_ignored():
    words, mask, regions, image, text = gloria_batch()
    loss = GloriaLoss()(words, mask, regions, image, text)["local"]
    changed = words.detach().clone()
    changed[0, 3:] = 100.0
    assert GloriaLoss()(changed, mask, regions, image, text)["local"].item() == pytest.approx(loss.item(), abs=1e-6)


def test_gloria_attention_and_gradients():
    words, mask, regions, image, text = gloria_batch()
    out = GloriaLoss()(words, mask, regions, image, text)
    attention = out["attention"]
    assert attention.shape == (3, 5, 6)
    sums = attention.sum(-1)
    assert torch.allclose(sums[mask], torch.ones(int(mask.sum())), atol=1e-6)
    assert torch.all(sums[~mask] == 0)
    out["loss"].backward()
    assert regions.grad.abs().sum() > 0 and words.grad.abs().sum() > 0
    assert torch.all(words.grad[~mask] == 0)
    assert set(out) == {"local", "global", "loss", "attention"}


def test_gloria_global_term_is_clip_at_gamma3():
    words, mask, regions, image, text = gloria_batch()
    out = GloriaLoss()(words, mask, regions, image, text)
    clip = ClipLoss()(F.normalize(image, dim=-1), F.normalize(text, dim=-1), torch.tensor(math.log(10.0)))
    assert out["global"].item() == pytest.approx(clip.item(), abs=1e-6)


# ---------------------------------------------------------------- Sinkhorn, prototypes, MGCA

def test_sinkhorn_marginals_are_uniform():
    scores = unit(16, 8) @ unit(4, 8, seed=1).T
    q = sinkhorn(scores, epsilon=0.05, iterations=50)
    assert torch.allclose(q.sum(1), torch.ones(16), atol=1e-5)
    assert torch.allclose(q.sum(0), torch.full((4,), 16 / 4), atol=1e-3)
    q3, q0 = sinkhorn(scores), sinkhorn(scores, iterations=0)  # MGCA's 3 iterations: rows exact, columns nearer
    assert torch.allclose(q3.sum(1), torch.ones(16), atol=1e-5)
    assert (q3.sum(0) - 4).abs().max() < (q0.sum(0) - 4).abs().max()
    assert not q3.requires_grad


def test_anchored_prototypes_start_at_anchors():
    anchors = torch.randn(3, 8)
    module = KnowledgePrototypes(5, 8, anchors=anchors, anchor_weight=2.0)
    assert torch.allclose(module.prototypes[:3], F.normalize(anchors, dim=-1))
    assert anchor_penalty(module.prototypes, module.anchors).item() == pytest.approx(0.0, abs=1e-6)
    out = module(unit(6, 8), unit(6, 8, seed=1))
    assert out["anchor"].item() == pytest.approx(0.0, abs=1e-6)
    assert out["loss"].item() == pytest.approx(out["swap"].item(), abs=1e-6)
    with torch.no_grad():
        module.prototypes[0] = -module.prototypes[0]
    out = module(unit(6, 8), unit(6, 8, seed=1))
    assert out["anchor"].item() == pytest.approx(2 / 3, abs=1e-5)  # one of three anchored prototypes opposite
    out["loss"].backward()
    assert module.prototypes.grad[3:].abs().sum() > 0  # free prototypes learn from the swap term


def test_swapped_prediction_matches_formula():
    image, text = unit(6, 8), unit(6, 8, seed=1)
    module = KnowledgePrototypes(4, 8)
    centres = F.normalize(module.prototypes.detach(), dim=-1)
    zi, zt = image @ centres.T, text @ centres.T
    qi, qt = sinkhorn(zi), sinkhorn(zt)
    expected = -((qi * (zt / 0.2).log_softmax(1)).sum(1).mean() + (qt * (zi / 0.2).log_softmax(1)).sum(1).mean()) / 2
    assert module(image, text)["swap"].item() == pytest.approx(expected.item(), abs=1e-6)


def test_token_alignment_ignores_padding_and_weights_tokens():
    g = torch.Generator().manual_seed(0)
    words, patches = torch.randn(2, 5, 8, generator=g), torch.randn(2, 4, 8, generator=g)
    mask = torch.tensor([[True] * 5, [True, True, True, False, False]])
    cta = TokenAlignmentLoss()
    loss = cta(words, mask, patches)
    changed = words.clone()
    changed[1, 3:] = 50.0
    assert cta(changed, mask, patches)["loss"].item() == pytest.approx(loss["loss"].item(), abs=1e-6)
    weights = torch.rand(2, 5, generator=g)
    assert cta(words, mask, patches, word_weights=weights)["words"].item() != pytest.approx(loss["words"].item(), abs=1e-5)
    scaled = cta(words, mask, patches, word_weights=3 * mask.float())  # weights are normalised per sample
    assert scaled["words"].item() == pytest.approx(loss["words"].item(), abs=1e-6)


# ---------------------------------------------------------------- KAD entity decoder

def test_entity_decoder_shapes_attention_and_padding():
    torch.manual_seed(0)
    decoder = EntityDecoder(EntityDecoderConfig(dim=16, layers=2, heads=2, ffn=32), query_dim=12, memory_dim=8).eval()
    queries, memory = torch.randn(5, 12), torch.randn(3, 7, 8)
    padding = torch.zeros(3, 7, dtype=torch.bool)
    padding[1, 4:] = True
    logits, attention = decoder(queries, memory, padding)
    assert logits.shape == (3, 5, 3) and attention.shape == (3, 5, 7)
    assert torch.allclose(attention.sum(-1), torch.ones(3, 5), atol=1e-5)
    assert torch.all(attention[1, :, 4:] == 0)
    changed = memory.clone()
    changed[1, 4:] = 100.0
    assert torch.allclose(decoder(queries, changed, padding).logits, logits, atol=1e-5)


def test_entity_loss_ignores_unknown():
    logits = torch.randn(2, 3, 3, requires_grad=True)
    states = torch.tensor([[P, N, A], [N, U, N]])
    loss = EntityLoss()(logits, states)
    known = states != N
    expected = F.cross_entropy(logits[known], states[known])
    assert loss.item() == pytest.approx(expected.item(), abs=1e-6)
    loss.backward()
    assert torch.all(logits.grad[~known] == 0)
    weights = torch.tensor([1.0, 2.0, 3.0])
    weighted = EntityLoss(weights)(logits, states)
    assert weighted.item() == pytest.approx(F.cross_entropy(logits[known], states[known], weight=weights).item(), abs=1e-6)
    assert EntityLoss()(logits, torch.full((2, 3), N)).item() == 0.0


def test_entity_region_contrast_equals_its_formula():
    scores = torch.tensor([[0.9, 0.1, 0.5], [0.2, 0.8, -0.3], [0.4, -0.6, 0.7], [-0.1, 0.3, 0.2]], requires_grad=True)
    states = torch.tensor([[P, A, P], [A, P, P], [P, U, P], [N, A, P]])  # entity 2 has no negative: not contrasted
    loss = EntityRegionContrast(scale=10.0)(scores, states)
    terms = []
    for k in range(2):
        negatives = [10 * scores[n, k] for n in range(4) if states[n, k] == A]
        for i in range(4):
            if states[i, k] == P:
                terms.append(F.softplus(torch.logsumexp(torch.stack(negatives), 0) - 10 * scores[i, k]))
    assert len(terms) == 3
    assert loss.item() == pytest.approx(torch.stack(terms).mean().item(), abs=1e-6)
    loss.backward()
    assert torch.all(scores.grad[:, 2] == 0) and scores.grad[2, 1] == 0 and scores.grad[3, 0] == 0  # U, N: neither side
    assert scores.grad[0, 0] < 0 and scores.grad[1, 0] > 0  # raise the positive, lower the negative
    nothing = EntityRegionContrast()(scores, torch.tensor([[P, P, P]] * 4))
    assert nothing.item() == 0.0 and nothing.requires_grad


def test_region_attention_is_each_entitys_own_map():
    torch.manual_seed(0)
    config = EntityDecoderConfig(dim=16, layers=2, heads=2, ffn=32, region_gamma=4.0)
    decoder = EntityDecoder(config, query_dim=12, memory_dim=8).eval()
    queries, memory = torch.randn(5, 12), torch.randn(3, 7, 8)
    padding = torch.zeros(3, 7, dtype=torch.bool)
    padding[1, 4:] = True
    attention, scores = decoder.region_attention(queries, memory, padding)
    q = F.normalize(decoder.query_mlp(queries), dim=-1)
    m = decoder.memory_norm(decoder.memory_proj(memory))
    cosine = torch.einsum("kd,bnd->bkn", q, F.normalize(m, dim=-1))
    expected = (4.0 * cosine).masked_fill(padding[:, None], float("-inf")).softmax(-1)
    assert torch.allclose(attention, expected, atol=1e-6) and torch.all(attention[1, :, 4:] == 0)
    context = F.normalize(torch.bmm(expected, m), dim=-1)
    assert torch.allclose(scores, (context * q).sum(-1), atol=1e-6)
    assert torch.allclose(decoder(queries, memory, padding).attention, attention, atol=1e-6)  # the maps the model shows
    other = queries.clone()
    other[0] = torch.randn(12)  # one entity's query changed: its map changes, no other entity's does
    changed = decoder.region_attention(other, memory, padding)[0]
    assert not torch.allclose(changed[:, 0], attention[:, 0], atol=1e-3)
    assert torch.allclose(changed[:, 1:], attention[:, 1:], atol=1e-6)
    cross = EntityDecoder(replace(config, region_gamma=0.0), query_dim=12, memory_dim=8).eval()
    cross.load_state_dict(decoder.state_dict())
    assert not torch.allclose(cross(queries, memory, padding).attention, attention, atol=1e-3)
    with pytest.raises(ValueError, match="region_gamma"):
        cross.region_attention(queries, memory)


def test_one_decoder_pass_over_both_sides_equals_one_pass_each():
    from types import SimpleNamespace

    from alignment.objective import _decode_together

    torch.manual_seed(0)
    decoder = EntityDecoder(EntityDecoderConfig(dim=16, layers=2, heads=2, ffn=32), query_dim=12, memory_dim=16).eval()
    queries = torch.randn(5, 12)
    model = SimpleNamespace(entities=lambda memory, padding=None, summary=None: decoder(queries, memory, padding, summary))
    regions, words = torch.randn(3, 4, 16), torch.randn(3, 7, 16)
    word_padding = torch.zeros(3, 7, dtype=torch.bool)
    word_padding[0, 5:] = True
    sides = [("entity_image", regions, None, torch.randn(3, 16), None),
             ("entity_text", words, word_padding, torch.randn(3, 16), None)]
    together = _decode_together(model, sides)
    for (_, memory, padding, summary, _), logits in zip(sides, together):
        assert torch.allclose(logits, model.entities(memory, padding, summary)[0], atol=1e-5)
