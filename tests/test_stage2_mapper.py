"""The emotion mapper: published size, options, save/load round trip."""

import json

import pytest
import torch

from emogen.errors import UserError
from emogen.pipelines.mapper import EmotionMapper, MapperConfig


def test_default_mapper_is_the_published_mlp():
    mapper = EmotionMapper(MapperConfig(in_dim=768, out_dim=768))
    assert mapper.num_parameters() == 1_574_656
    kinds = [type(m).__name__ for m in mapper.net]
    assert kinds == ["Linear", "ReLU", "Linear"]
    assert mapper(torch.randn(3, 768)).shape == (3, 768)


def test_options_change_the_architecture():
    deep = EmotionMapper(
        MapperConfig(in_dim=8, out_dim=6, hidden_dim=16, num_hidden_layers=3, layer_norm=True, dropout=0.1)
    )
    names = [type(m).__name__ for m in deep.net]
    assert names.count("Linear") == 4 and names.count("LayerNorm") == 3 and names.count("Dropout") == 3
    linear = EmotionMapper(MapperConfig(in_dim=8, out_dim=6, kind="linear"))
    assert linear.num_parameters() == 8 * 6 + 6
    with pytest.raises(ValueError, match="dropout"):
        MapperConfig(dropout=1.5)


def test_save_and_load_round_trip(tmp_path):
    torch.manual_seed(0)
    mapper = EmotionMapper(MapperConfig(in_dim=8, out_dim=6, hidden_dim=16, layer_norm=True))
    mapper.save_pretrained(tmp_path / "mapper")
    assert json.loads((tmp_path / "mapper" / "config.json").read_text())["hidden_dim"] == 16
    loaded = EmotionMapper.from_pretrained(tmp_path / "mapper")
    x = torch.randn(4, 8)
    assert torch.equal(loaded(x), mapper.eval()(x))
    with pytest.raises(UserError, match=r"config.json"):
        EmotionMapper.from_pretrained(tmp_path / "nothing")
