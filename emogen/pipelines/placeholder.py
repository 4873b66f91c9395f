"""Placeholder tokens whose input embedding is the mapper's output (docs/method.md "Stage 2").

The replacement is differentiable and batched: a forward hook on the text encoder's token
embedding swaps the placeholder positions' embeddings for the given vectors
(``torch.where``), so the gradient reaches the vectors and the embedding table is never
written. (transformers 5's ``CLIPTextModel.forward`` takes ``input_ids`` only, no
``inputs_embeds``; the hook keeps everything else of its forward — positions, causal
mask, final LayerNorm — exactly as the library does it.) The published code wrote into the
table's ``.data`` instead, which forbids batches > 1 and breaks on current transformers.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from emogen.errors import UserError


def second_placeholder(token: str) -> str:
    """``<emotion>`` → ``<emotion_2>``: the second token of two-token fusion."""
    return f"{token[:-1]}_2>" if token.startswith("<") and token.endswith(">") else f"{token}_2"


def add_placeholder_tokens(tokenizer, text_encoder: nn.Module, tokens: Sequence[str]) -> list[int]:
    """Add ``tokens`` to ``tokenizer`` and grow ``text_encoder``'s embedding table to match.

    A token the tokenizer already holds as an *added* token (e.g. a saved EmoGen pipeline's
    tokenizer) is reused; one that is part of the base vocabulary or a special token would
    mean something else already, which is an error. The new table rows are set to the mean
    embedding (deterministic; they are always replaced anyway) and the table keeps its
    ``requires_grad`` flag, so a frozen encoder stays frozen.
    """
    if len(set(tokens)) != len(tokens):
        raise UserError(f"placeholder tokens must be distinct, got {list(tokens)}")
    added_vocab = tokenizer.get_added_vocab()
    special = set(tokenizer.all_special_tokens)
    vocab = tokenizer.get_vocab()
    for token in tokens:
        if not token or token.strip() != token:
            raise UserError(f"placeholder token {token!r} must be non-empty without surrounding spaces")
        if token in added_vocab and token not in special:
            continue
        existing = tokenizer(token, add_special_tokens=False)["input_ids"]
        # An existing token, or a word the vocabulary spells as one token ("cat" → "cat</w>"):
        # adding it would hijack that word in every prompt.
        if token in special or token in vocab or len(existing) == 1:
            raise UserError(
                f"placeholder token {token!r} is already in the tokenizer's vocabulary with its own "
                "meaning; choose another (e.g. '<emotion>')"
            )
    tokenizer.add_tokens([t for t in tokens if t not in added_vocab])
    ids = []
    for token in tokens:
        encoded = tokenizer(token, add_special_tokens=False)["input_ids"]
        if len(encoded) != 1:
            raise UserError(
                f"placeholder token {token!r} does not tokenize to one id (got {encoded}); "
                "use a lower-case token without spaces, e.g. '<emotion>'"
            )
        ids.append(encoded[0])

    table = text_encoder.get_input_embeddings()
    old_rows = table.weight.shape[0]
    if len(tokenizer) > old_rows:
        requires_grad = table.weight.requires_grad
        text_encoder.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        weight = text_encoder.get_input_embeddings().weight
        with torch.no_grad():
            weight[old_rows:] = weight[:old_rows].mean(dim=0)
        weight.requires_grad_(requires_grad)
    if max(ids) >= text_encoder.get_input_embeddings().weight.shape[0]:
        raise UserError(f"placeholder ids {ids} exceed the text encoder's embedding table")
    return ids


@contextmanager
def _replaced_token_embeddings(text_encoder: nn.Module, replacements: Mapping[int, torch.Tensor]) -> Iterator[None]:
    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        ids = inputs[0]
        for token_id, vectors in replacements.items():
            vectors = vectors.to(device=output.device, dtype=output.dtype)
            if vectors.dim() == 1:
                vectors = vectors.expand(ids.shape[0], -1)
            if vectors.shape != (ids.shape[0], output.shape[-1]):
                raise ValueError(
                    f"replacement for token id {token_id} has shape {tuple(vectors.shape)}, "
                    f"expected ({ids.shape[0]}, {output.shape[-1]})"
                )
            output = torch.where((ids == token_id).unsqueeze(-1), vectors.unsqueeze(1), output)
        return output

    handle = text_encoder.get_input_embeddings().register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def encode_with_placeholders(
    text_encoder: nn.Module, input_ids: torch.Tensor, replacements: Mapping[int, torch.Tensor]
) -> torch.Tensor:
    """Run the text encoder with each placeholder's embedding replaced; ``(B, L, D)``.

    ``replacements`` maps a placeholder token id to its vectors, ``(B, D)`` (one per prompt)
    or ``(D,)`` (the same for every prompt). Several placeholders per prompt are fine; every
    occurrence of a placeholder in a prompt gets that prompt's vector.
    """
    with _replaced_token_embeddings(text_encoder, replacements):
        return text_encoder(input_ids=input_ids).last_hidden_state


def placeholder_positions(input_ids: torch.Tensor, token_id: int) -> torch.Tensor:
    """Index of the first occurrence of ``token_id`` in each row of ``input_ids``, ``(B,)``."""
    found = input_ids == token_id
    if not bool(found.any(dim=1).all()):
        missing = (~found.any(dim=1)).nonzero().flatten().tolist()
        raise ValueError(f"placeholder token id {token_id} is missing from prompt rows {missing}")
    return found.int().argmax(dim=1)


def placeholder_hidden_state(hidden: torch.Tensor, input_ids: torch.Tensor, token_id: int) -> torch.Tensor:
    """The ``(B, D)`` hidden state at the first ``token_id`` position of each prompt."""
    positions = placeholder_positions(input_ids, token_id).to(hidden.device)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), positions]
