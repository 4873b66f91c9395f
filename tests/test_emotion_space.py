"""Emotion-space Gaussians, summary and picture on hand-made vectors."""

import numpy as np
import pytest
import torch

from emogen.emotions import EMOTIONS
from emogen.errors import DataError
from emogen.stages.emotion_space import emotion_gaussians, pca_2d, plot_space, space_summary


def _vectors(per_emotion=5, dim=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(len(EMOTIONS)).repeat_interleave(per_emotion)
    vectors = torch.randn(len(labels), dim, generator=g) + labels[:, None].float()
    return vectors, labels


def test_gaussians_are_mean_and_unbiased_std():
    vectors, labels = _vectors()
    gaussians = emotion_gaussians(vectors, labels)
    assert set(gaussians) == {"mean", "std"}
    x = vectors.numpy().astype(np.float64)
    for i in range(len(EMOTIONS)):
        group = x[labels.numpy() == i]
        np.testing.assert_allclose(gaussians["mean"][i], group.mean(0), rtol=1e-6)
        np.testing.assert_allclose(gaussians["std"][i], group.std(0, ddof=1), rtol=1e-6)


def test_full_covariance_option():
    vectors, labels = _vectors()
    gaussians = emotion_gaussians(vectors, labels, covariance="full")
    assert gaussians["cov"].shape == (8, 6, 6)
    group = vectors[labels == 3].numpy().astype(np.float64)
    np.testing.assert_allclose(gaussians["cov"][3], np.cov(group.T, ddof=1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(torch.diagonal(gaussians["cov"], dim1=1, dim2=2).sqrt(), gaussians["std"], rtol=1e-5)


def test_weighted_gaussians_are_numpys_reliability_weighted_estimates():
    vectors, labels = _vectors(per_emotion=6)
    weights = torch.rand(len(labels), generator=torch.Generator().manual_seed(1))
    gaussians = emotion_gaussians(vectors, labels, covariance="full", weights=weights)
    for i in range(len(EMOTIONS)):
        group, w = vectors[labels == i].double().numpy(), weights[labels == i].double().numpy()
        cov = np.cov(group.T, ddof=1, aweights=w)
        np.testing.assert_allclose(gaussians["mean"][i], np.average(group, axis=0, weights=w), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(gaussians["cov"][i], cov, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(gaussians["std"][i], np.sqrt(np.diag(cov)), rtol=1e-5)
    # zero weight = the image left out; equal weights = the unweighted (published) estimate
    keep = torch.arange(len(labels)) % 3 != 0
    dropped = emotion_gaussians(vectors, labels, "full", weights=keep.double())
    for key, value in emotion_gaussians(vectors[keep], labels[keep], "full").items():
        torch.testing.assert_close(dropped[key], value)
    for key, value in emotion_gaussians(vectors, labels, "full").items():
        torch.testing.assert_close(
            emotion_gaussians(vectors, labels, "full", torch.full((len(labels),), 0.3))[key], value
        )


def test_too_few_images_names_the_emotion():
    vectors, labels = _vectors(per_emotion=2)
    keep = ~((labels == EMOTIONS.index("fear")) & (torch.arange(len(labels)) % 2 == 0))
    with pytest.raises(DataError, match=r"fear \(1\)"):
        emotion_gaussians(vectors[keep], labels[keep])


def test_summary_cosines_and_polarity():
    vectors, labels = _vectors()
    summary = space_summary(vectors, labels, emotion_gaussians(vectors, labels))
    cos = summary["mean_cosine"]
    assert cos["awe"]["awe"] == pytest.approx(1.0)
    assert cos["anger"]["fear"] == pytest.approx(cos["fear"]["anger"])
    assert summary["per_emotion"]["sadness"]["count"] == 5
    assert summary["per_emotion"]["sadness"]["mean_norm"] > summary["per_emotion"]["amusement"]["mean_norm"]


def test_pca_is_deterministic_and_picture_written(tmp_path):
    vectors, labels = _vectors(per_emotion=20)
    _centre, axes, explained = pca_2d(vectors)
    _, axes_again, _ = pca_2d(vectors.clone())
    assert torch.equal(axes, axes_again) and axes.shape == (6, 2)
    # The variance along each axis over the total: the centred data's squared singular values.
    variances = torch.linalg.svdvals(vectors.double() - vectors.double().mean(0)) ** 2
    assert list(explained) == pytest.approx((variances[:2] / variances.sum()).tolist(), rel=1e-6)
    means = emotion_gaussians(vectors, labels)["mean"]
    plot_space(vectors, labels, means, tmp_path / "pca.png", max_points=50, seed=1)
    assert (tmp_path / "pca.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
