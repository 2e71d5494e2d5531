"""Word-level text features (sub-word pieces summed into words, as GLoRIA does) and freezing the lower layers,
on the bundled MiniLM."""

from __future__ import annotations

import pytest
import torch

from encoders.text import TextEncoder

TEXTS = ["Pleural effusions unchanged.", "No pneumothorax, left-sided"]


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    return TextEncoder.from_pretrained(device="cpu").eval()


def test_words_are_the_pre_tokenizers_words_with_their_spans(encoder):
    features = encoder.features(TEXTS)
    pre_tokenize = encoder.tokenizer.backend_tokenizer.pre_tokenizer.pre_tokenize_str
    for text, words, spans in zip(TEXTS, features.word_text, features.word_spans):
        expected = pre_tokenize(text)
        assert spans == [span for _, span in expected]
        assert words == [text[a:b] for a, b in spans] == [text[a:b] for _, (a, b) in expected]
    assert features.word_text[0] == ["Pleural", "effusions", "unchanged", "."]
    assert features.words.shape == (2, 6, encoder.dim)
    assert features.word_mask.tolist() == [[True] * 4 + [False] * 2, [True] * 6]
    assert not features.words[0, 4:].any()


def test_a_word_vector_is_the_sum_of_its_pieces_states(encoder):
    features = encoder.features(TEXTS)
    batch = encoder.tokenize(TEXTS)
    states = encoder.token_states(batch)
    pieces = torch.tensor([w == 0 for w in batch.word_ids(0)])
    assert pieces.sum() > 1  # "Pleural" is more than one piece, else this test tests nothing
    torch.testing.assert_close(features.words[0, 0], states[0, pieces].sum(0))
    for row in range(2):
        for word in range(int(features.word_mask[row].sum())):
            pieces = torch.tensor([w == word for w in batch.word_ids(row)])
            torch.testing.assert_close(features.words[row, word], states[row, pieces].sum(0))
    torch.testing.assert_close(features.sentence, encoder(batch))  # unit vectors, as forward() gives


def test_freeze_leaves_exactly_the_top_layers_trainable():
    encoder = TextEncoder.from_pretrained(device="cpu")
    layers = encoder.model.encoder.layer
    encoder.freeze(trainable_layers=2)
    trainable = {name for name, p in encoder.named_parameters() if p.requires_grad}
    assert trainable == {f"model.encoder.layer.{i}.{name}" for i in (4, 5) for name, _ in layers[i].named_parameters()}
    encoder.features(TEXTS).words.sum().backward()
    assert layers[5].output.dense.weight.grad is not None and layers[3].output.dense.weight.grad is None
    encoder.freeze()
    assert not any(p.requires_grad for p in encoder.parameters())
    with pytest.raises(ValueError, match="trainable_layers"):
        encoder.freeze(trainable_layers=len(layers) + 1)
