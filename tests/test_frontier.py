"""The frontier's comparison at matched Emo-A, with cases a person can compute by hand."""

import math

import pytest

from emogen.config import ParamsError, parse_params
from emogen.stages.frontier import mark_pareto, matched_comparisons, sem_d_at


def _point(scale, emo_a, sem_d):
    return {"guidance_scale": scale, "emo_a": {"value": emo_a}, "sem_d": {"value": sem_d}}


def test_sem_d_at_interpolates_between_points_and_never_extrapolates():
    points = [(0.6, 1.8), (0.4, 2.6)]  # any order
    assert sem_d_at(points, 0.5) == pytest.approx(2.2)
    assert sem_d_at(points, 0.4) == pytest.approx(2.6) and sem_d_at(points, 0.6) == pytest.approx(1.8)
    assert sem_d_at(points, 0.7) is None and sem_d_at(points, 0.39) is None


def test_matched_comparisons_per_reference_point():
    curves = {
        "emogen": [_point(3.0, 0.5, 2.4), _point(7.5, 0.8, 2.0)],
        "textual_inversion": [_point(3.0, 0.4, 2.6), _point(7.5, 0.6, 1.8)],
    }
    for curve in curves.values():
        mark_pareto(curve)
    rows = matched_comparisons(curves)["textual_inversion"]
    assert rows[0]["sem_d"] == pytest.approx(2.2) and rows[0]["emogen_more_diverse"] is True
    assert rows[1]["sem_d"] is None and rows[1]["emogen_more_diverse"] is None  # 0.8: beyond TI's range
    assert set(matched_comparisons(curves)) == {"textual_inversion"}


def test_pareto_flags_points_no_other_point_of_the_method_beats_on_both_axes():
    curve = [_point(1.0, 0.25, 3.0), _point(3.0, 0.58, 2.44), _point(7.5, 0.52, 2.17), _point(9.0, 0.58, 2.44)]
    mark_pareto(curve)
    # 7.5 is beaten on both axes by 3.0; 3.0 and 9.0 tie (neither beats the other)
    assert [p["pareto"] for p in curve] == [True, True, False, True]


def test_guidance_scales_below_one_are_refused_naming_the_key():
    with pytest.raises(ParamsError, match=r"frontier.*guidance_scales"):
        parse_params({"frontier": {"guidance_scales": [0.5, 3.0]}})


def test_a_missing_pipeline_is_an_error_naming_the_folder_and_the_stage(tmp_path):
    from emogen.errors import UserError
    from emogen.layout import Layout
    from emogen.stages.frontier import load_method_pipeline

    layout = Layout(tmp_path)
    with pytest.raises(UserError, match=r"models/baselines/dreambooth.*dvc repro baseline@dreambooth"):
        load_method_pipeline(layout, "dreambooth", "cpu")
    with pytest.raises(UserError, match=r"models/emogen.*dvc repro generate"):
        load_method_pipeline(layout, "emogen", "cpu")


# --- the matched comparison's bootstrap over images -----------------------------------------


def _images(correct_by_emotion, scale):
    """Two emotions × 3 images; features: the 3 one-hot vectors × ``scale`` in each emotion, so
    every within-emotion pair's MSE is 2·scale²/3 (whatever a resample keeps, it is the same)."""
    import numpy as np

    from emogen.stages.frontier import PointImages

    labels = np.repeat([0, 1], 3)
    features = np.vstack([np.eye(3), np.eye(3)]) * scale
    correct = np.repeat(np.asarray(correct_by_emotion, dtype=float), 3)
    return PointImages(correct, labels, features)


def test_point_draws_by_hand():
    import numpy as np

    from emogen.stages.frontier import PointImages, point_draws

    # emotion 0: features 0 and 2 (one pair, MSE 4), emotion 1: 1 and 1 (MSE 0); hits 1, 0 | 1, 1
    point = PointImages(np.array([1.0, 0.0, 1.0, 1.0]), np.array([0, 0, 1, 1]), np.array([[0.0], [2.0], [1.0], [1.0]]))
    emo_a, sem_d = point_draws(point, np.array([[1, 1, 1, 1], [2, 0, 1, 1], [0, 2, 2, 0]], dtype=float))
    # all ones: 3/4 and (4 + 0) / 2; image 0 twice: no distinct pair in emotion 0, so only emotion 1
    # counts (0); image 1 twice, image 2 twice: Emo-A (0 + 2) / 4, again only emotion 1 → none at all
    assert emo_a.tolist() == pytest.approx([0.75, 1.0, 0.5])
    assert sem_d[:2].tolist() == pytest.approx([2.0, 0.0])


def test_matched_bootstrap_by_hand():
    import numpy as np

    from emogen.stages.frontier import matched_bootstrap

    # Emo-A of a point: 0 (no hit), 0.5 (emotion 0 hit, 1 missed) or 1 — in every resample, since
    # hits only differ between emotions. Sem-D = 2·scale²/3.
    points = {
        "emogen": [_images([0, 0], 1.5), _images([1, 0], math.sqrt(3.75))],  # (0, 1.5), (0.5, 2.5)
        "prompt": [_images([0, 0], 1.5), _images([1, 1], math.sqrt(1.5))],  # (0, 1.5), (1, 1.0)
        "dreambooth": [_images([1, 0], 1.0), _images([1, 1], 1.0)],  # Emo-A 0.5 .. 1 only
    }
    out = matched_bootstrap(points, [1.0, 3.0], samples=50, confidence=0.95, rng=np.random.default_rng(0))
    low, mid = out["prompt"]
    # at EmoGen's g=1: Emo-A 0 → prompt's Sem-D 1.5 there: difference 0, and 0 in every draw
    assert low["emo_a"] == 0 and low["difference"] == pytest.approx(0, abs=1e-9)
    # (a draw that keeps one image per emotion has no pair at all: Sem-D undefined, 1 in 81)
    assert low["verdict"] == "no difference detected" and 0.9 <= low["defined_fraction"] < 1
    # at g=3: Emo-A 0.5 → prompt's Sem-D halfway, (1.5 + 1.0) / 2 = 1.25; EmoGen's 2.5 → +1.25
    assert mid["emogen_sem_d"] == pytest.approx(2.5) and mid["sem_d"] == pytest.approx(1.25)
    assert mid["difference"] == pytest.approx(1.25) and mid["low"] == pytest.approx(1.25)
    assert mid["high"] == pytest.approx(1.25) and mid["se"] == pytest.approx(0, abs=1e-9) and mid["verdict"] == "higher"
    # EmoGen's Emo-A 0 lies below DreamBooth's curve: no value, no interval
    assert out["dreambooth"][0]["difference"] is None and out["dreambooth"][0]["defined_fraction"] == 0
    assert out["dreambooth"][1]["difference"] == pytest.approx(2.5 - 2 / 3, abs=1e-4)
    assert set(out) == {"prompt", "dreambooth"}


def test_matched_bootstrap_interval_widens_with_noise_and_refuses_unpaired_images():
    import numpy as np

    from emogen.stages.frontier import PointImages, matched_bootstrap

    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(8), 48)

    def noisy(p_hit, spread):
        return PointImages(
            (rng.random(len(labels)) < p_hit).astype(float), labels, rng.normal(0, spread, (len(labels), 4))
        )

    points = {"emogen": [noisy(0.3, 1.2), noisy(0.6, 1.0)], "prompt": [noisy(0.2, 1.0), noisy(0.8, 0.8)]}
    row = matched_bootstrap(points, [1.0, 3.0], 200, 0.95, np.random.default_rng(2))["prompt"][1]
    assert row["low"] < row["difference"] < row["high"] and row["se"] > 0
    assert row["defined_fraction"] > 0.9
    points["prompt"][0] = PointImages(points["prompt"][0].correct, labels[::-1].copy(), points["prompt"][0].features)
    with pytest.raises(ValueError, match=r"prompt.*seeds"):
        matched_bootstrap(points, [1.0, 3.0], 10, 0.95, np.random.default_rng(0))
