"""The offline caption tokenizer: every caption word is one token, and damage is loud."""

import json
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from emogen.data.synthetic_world import World, captions, emotion_caption_mask, sample_specs
from emogen.emotions import EMOTIONS
from emogen.pipelines.tokenizer import TokenizerError, build_tokenizer, caption_words, load_tokenizer


@pytest.fixture(scope="module")
def caption_list():
    world = World()
    specs = sample_specs(world, 300, np.random.default_rng(0))
    named = emotion_caption_mask(len(specs), 0.15, np.random.default_rng(1))
    return [c for spec, emotion in zip(specs, named) for c in captions(spec, world, bool(emotion))]


@pytest.fixture
def built(tmp_path, caption_list):
    folder = tmp_path / "tokenizer"
    tokenizer = build_tokenizer(caption_list, folder, max_length=16)
    return folder, tokenizer, caption_words(caption_list)


def test_every_caption_word_is_one_token_and_captions_round_trip(built, caption_list):
    folder, tokenizer, words = built
    assert {p.name for p in folder.iterdir()} == {"vocab.json", "merges.txt", "tokenizer_config.json"}
    assert "balloon" in words and "beach" in words
    assert set(EMOTIONS) <= set(words)  # the prompt baseline's words, each one token
    for word in words:
        assert tokenizer.tokenize(word) == [word + "</w>"]
    for caption in caption_list[:50]:
        ids = tokenizer(caption).input_ids
        assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
        # a comma is a token of its own and decodes with a space before it, as in SD's CLIP
        assert tokenizer.decode(ids, skip_special_tokens=True) == caption.replace(",", " ,")
    assert tokenizer.model_max_length == 16
    assert len(tokenizer("").input_ids) == 2  # the empty (unconditional) prompt: start + end


def test_loading_checks_the_size(built):
    folder, tokenizer, words = built
    assert len(load_tokenizer(folder, len(tokenizer), words)) == len(tokenizer)
    with pytest.raises(TokenizerError, match=f"expected {len(tokenizer) + 1}"):
        load_tokenizer(folder, len(tokenizer) + 1)


@pytest.mark.parametrize("damage", ["truncate_vocab", "drop_vocab", "truncate_merges"])
def test_damaged_files_fail_loudly(built, damage):
    folder, tokenizer, words = built
    name = "merges.txt" if "merges" in damage else "vocab.json"
    path = folder / name
    if damage.startswith("drop"):
        path.unlink()  # transformers would quietly build a 2-token tokenizer
    else:
        text = path.read_text()
        path.write_text(text[: len(text) // 2] + ("\n" if name == "merges.txt" else ""))
    with pytest.raises(TokenizerError, match=str(folder)):
        load_tokenizer(folder, len(tokenizer), words)


def test_same_captions_same_files_in_another_process(built, caption_list, tmp_path):
    """The BPE trainer numbers its alphabet in a per-process hash order; ours must not."""
    folder, _tokenizer, _words = built
    script = (
        "import sys, pathlib, pyarrow.parquet as pq\n"
        "from emogen.pipelines.tokenizer import build_tokenizer\n"
        "caps = pq.read_table(sys.argv[1]).column('c').to_pylist()\n"
        "build_tokenizer(caps, pathlib.Path(sys.argv[2]), max_length=16)\n"
    )
    pq.write_table(pa.table({"c": caption_list}), tmp_path / "caps.parquet")
    other = tmp_path / "other"
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "caps.parquet"), str(other)], check=True, timeout=120)
    for name in ("vocab.json", "merges.txt"):
        assert (other / name).read_bytes() == (folder / name).read_bytes(), name
    vocab = json.loads((folder / "vocab.json").read_text())
    assert vocab["<|startoftext|>"] == 0 and vocab["<|endoftext|>"] == 1
