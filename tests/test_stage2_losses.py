"""The stage-2 objective against numbers worked out by hand (docs/method.md "Stage 2"):
L_i = (1 − α_i)·L_LDM,i + λ_attr·α_i·L_attr,i, averaged over the batch."""

import math

import pytest
import torch
from torch import nn

from emogen.pipelines.losses import attribute_logits, attribute_loss, ldm_loss, total_loss


def test_ldm_loss_is_the_per_sample_mean_squared_error():
    prediction = torch.tensor([[[1.0, 2.0]], [[0.0, 0.0]]])
    target = torch.tensor([[[0.0, 0.0]], [[1.0, -1.0]]])
    assert ldm_loss(prediction, target).tolist() == [2.5, 1.0]  # (1 + 4) / 2, (1 + 1) / 2


def test_attribute_logits_are_cosines_over_temperature():
    projection = nn.Linear(2, 2, bias=False)
    nn.init.eye_(projection.weight)
    bank = torch.eye(2)
    logits = attribute_logits(torch.tensor([[3.0, 4.0]]), projection, bank, temperature=0.5)
    assert logits[0].tolist() == pytest.approx([1.2, 1.6])  # (0.6, 0.8) / 0.5


def test_attribute_loss_is_cross_entropy_and_zero_without_an_attribute():
    logits = torch.tensor([[1.2, 1.6], [1.2, 1.6]])
    loss = attribute_loss(logits, torch.tensor([0, -1]))
    assert loss.tolist() == pytest.approx([math.log(1 + math.exp(0.4)), 0.0])


def test_total_loss_weights_ldm_by_one_minus_alpha_and_attr_by_lambda_alpha():
    ldm, attr = torch.tensor([2.0, 1.0]), torch.tensor([3.0, 0.5])
    alpha, lam = torch.tensor([0.25, 0.75]), 0.1
    # sample 1: 0.75·2 + 0.1·0.25·3 = 1.575; sample 2: 0.25·1 + 0.1·0.75·0.5 = 0.2875
    expected = (1.575 + 0.2875) / 2
    assert total_loss(ldm, attr, alpha, lam).item() == pytest.approx(expected)
    # The two classic slips give other numbers: α and 1 − α swapped (0.74375), λ dropped (1.4375).
    assert abs(0.74375 - expected) > 0.1 and abs(1.4375 - expected) > 0.1
