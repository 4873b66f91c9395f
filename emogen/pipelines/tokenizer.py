"""An offline CLIP tokenizer built from the caption word list, and a loader that checks it.

The embedded base model has no pretrained vocabulary to download, so ``build_tokenizer``
trains a byte-level BPE (CLIP's normalisation, pre-tokenisation and ``</w>`` suffix) on the
captions until every word is one token, and writes ``vocab.json`` + ``merges.txt`` the way
SD 1.5's ``tokenizer/`` folder holds them. ``load_tokenizer`` is the only way we load a
tokenizer: transformers quietly returns a 2-token tokenizer when its files are missing or
unreadable, so the size and (for the embedded one) every word's round trip are checked.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
from transformers import CLIPTokenizer

from emogen.errors import UserError
from emogen.jsonio import write_json

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
# CLIP's own pre-tokeniser pattern (transformers' CLIPTokenizer), so training and loading agree.
_SPLIT = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""


class TokenizerError(UserError):
    """A tokenizer folder is unreadable, truncated or does not match its text encoder."""


def caption_words(captions: Iterable[str]) -> list[str]:
    """The sorted distinct lower-case words of ``captions`` as CLIP pre-tokenises them."""
    pre = pre_tokenizers.Split(Regex(_SPLIT), behavior="removed", invert=True)
    words = {piece for text in captions for piece, _ in pre.pre_tokenize_str(text.lower())}
    return sorted(words)


def build_tokenizer(captions: Sequence[str], out_dir: Path, max_length: int) -> CLIPTokenizer:
    """Train the BPE on ``captions``, save it to ``out_dir`` and return it loaded back (checked)."""
    backend = Tokenizer(models.BPE(end_of_word_suffix="</w>", unk_token=EOS))
    backend.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_SPLIT), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=1_000_000,  # no cap: merge until every word is a single token
        min_frequency=1,
        special_tokens=[BOS, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        end_of_word_suffix="</w>",
        show_progress=False,
    )
    backend.train_from_iterator(captions, trainer)
    out_dir.mkdir(parents=True, exist_ok=True)
    backend.model.save(str(out_dir))  # vocab.json + merges.txt
    _canonical_ids(out_dir)
    # Persist only the config beside vocab/merges (no tokenizer.json), as SD 1.5 ships it.
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "bos_token": BOS,
        "eos_token": EOS,
        "unk_token": EOS,
        "pad_token": EOS,
        "model_max_length": max_length,
    }
    write_json(out_dir / "tokenizer_config.json", config)
    words = caption_words(captions)
    return load_tokenizer(out_dir, len(backend.get_vocab()), words)


def _canonical_ids(folder: Path) -> None:
    """Renumber ``vocab.json``: special tokens, the sorted alphabet, then merge results in
    merge order. The trainer's merges are deterministic but the ids it gives the alphabet
    follow a hash-set order that changes per process, which would change the weights."""
    vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    lines = (folder / "merges.txt").read_text(encoding="utf-8").splitlines()
    produced = list(dict.fromkeys("".join(line.split(" ")) for line in lines if line and not line.startswith("#")))
    special = [BOS, EOS]
    alphabet = sorted(set(vocab) - set(produced) - set(special))
    order = special + alphabet + [t for t in produced if t not in special]
    if set(order) != set(vocab) or len(order) != len(vocab):
        raise TokenizerError(f"{folder}: trained vocabulary and merges disagree")
    ids = {token: i for i, token in enumerate(order)}
    write_json(folder / "vocab.json", ids, indent=None, ensure_ascii=False)


def load_tokenizer(folder: Path, expected_size: int, words: Sequence[str] = ()) -> CLIPTokenizer:
    """Load a CLIPTokenizer from ``folder``; it must have ``expected_size`` tokens and
    encode each of ``words`` as exactly one token (a truncated ``merges.txt`` splits them)."""
    try:
        tokenizer = CLIPTokenizer.from_pretrained(folder, local_files_only=True)
    except Exception as exc:
        # json, tokenizers and transformers each raise their own types on corrupt files.
        raise TokenizerError(f"{folder}: cannot load the tokenizer ({type(exc).__name__}: {exc})") from None
    if len(tokenizer) != expected_size:
        raise TokenizerError(
            f"{folder}: tokenizer has {len(tokenizer)} tokens, expected {expected_size} "
            "(missing or truncated vocab.json / merges.txt / tokenizer.json?)"
        )
    if words:
        encoded = tokenizer(list(words), add_special_tokens=False)["input_ids"]
        split = [w for w, ids in zip(words, encoded) if len(ids) != 1]
        if split:
            raise TokenizerError(
                f"{folder}: {len(split)} caption word(s) no longer encode as one token, "
                f"e.g. {split[:5]} (truncated merges.txt?)"
            )
    return tokenizer
