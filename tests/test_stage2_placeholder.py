"""Placeholder tokens: added once, replaced differentiably, batched, several per prompt."""

import pytest
import torch
from transformers import CLIPTextModel, CLIPTokenizer

from emogen.errors import UserError
from emogen.pipelines.placeholder import (
    add_placeholder_tokens,
    encode_with_placeholders,
    placeholder_hidden_state,
)
from tests.helpers.tiny_sd import build_tiny_sd


@pytest.fixture(scope="module")
def text_parts(tmp_path_factory):
    sd = build_tiny_sd(tmp_path_factory.mktemp("tiny"), with_vae=False)
    tokenizer = CLIPTokenizer.from_pretrained(sd.pipeline / "tokenizer")
    encoder = CLIPTextModel.from_pretrained(sd.pipeline / "text_encoder").requires_grad_(False)
    return tokenizer, encoder


def test_add_tokens_grows_the_frozen_table_and_rejects_existing_words(text_parts):
    tokenizer, encoder = text_parts
    before = len(tokenizer)
    ids = add_placeholder_tokens(tokenizer, encoder, ["<emotion>", "<emotion_b>"])
    assert ids == [before, before + 1]
    weight = encoder.get_input_embeddings().weight
    assert weight.shape[0] == len(tokenizer) and not weight.requires_grad
    assert add_placeholder_tokens(tokenizer, encoder, ["<emotion>"]) == ids[:1]  # reused
    for word in ("cat", "<|endoftext|>"):
        with pytest.raises(UserError, match="already in the tokenizer"):
            add_placeholder_tokens(tokenizer, encoder, [word])


def test_replacement_is_differentiable_batched_and_per_placeholder(text_parts):
    tokenizer, encoder = text_parts
    first, second = add_placeholder_tokens(tokenizer, encoder, ["<emotion>", "<emotion_b>"])
    prompts = ["<emotion> bag", "a <emotion> cat and <emotion_b>", "<emotion_b> <emotion>"]
    ids = tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length, return_tensors="pt").input_ids
    width = encoder.config.hidden_size
    v1 = torch.randn(3, width, requires_grad=True)
    v2 = torch.randn(3, width, requires_grad=True)
    hidden = encode_with_placeholders(encoder, ids, {first: v1, second: v2})
    assert hidden.shape == (3, ids.shape[1], width)

    # Each prompt sees its own vector: changing prompt 1's vector leaves prompt 0 unchanged.
    v1_changed = v1.detach().clone()
    v1_changed[1] += 1.0
    hidden_changed = encode_with_placeholders(encoder, ids, {first: v1_changed, second: v2.detach()})
    assert torch.allclose(hidden_changed[0], hidden[0].detach())
    assert not torch.allclose(hidden_changed[1], hidden[1].detach())

    at_placeholder = placeholder_hidden_state(hidden, ids, first)
    assert torch.equal(at_placeholder[0], hidden[0, 1])  # "<emotion>" right after start-of-text
    (at_placeholder.pow(2).sum() + hidden[:, -1].pow(2).sum()).backward()
    assert v1.grad.abs().sum() > 0 and v2.grad[1:].abs().sum() > 0
    assert v2.grad[0].abs().sum() == 0  # prompt 0 has no second placeholder
    assert all(p.grad is None for p in encoder.parameters())
    # The hook is gone afterwards: a plain forward is the library's own.
    plain = encoder(input_ids=ids).last_hidden_state
    assert not torch.allclose(plain[0, 1], hidden[0, 1].detach())
    assert len(encoder.get_input_embeddings()._forward_hooks) == 0


def test_bad_shapes_and_missing_placeholder_are_errors(text_parts):
    tokenizer, encoder = text_parts
    (first,) = add_placeholder_tokens(tokenizer, encoder, ["<emotion>"])
    ids = tokenizer(["<emotion>", "cat"], padding="max_length", max_length=8, return_tensors="pt").input_ids
    with pytest.raises(ValueError, match="shape"):
        encode_with_placeholders(encoder, ids, {first: torch.zeros(3, encoder.config.hidden_size)})
    hidden = encode_with_placeholders(encoder, ids, {first: torch.zeros(encoder.config.hidden_size)})
    with pytest.raises(ValueError, match="missing from prompt rows \\[1\\]"):
        placeholder_hidden_state(hidden, ids, first)
