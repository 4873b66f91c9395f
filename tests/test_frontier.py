"""The frontier's comparison at matched Emo-A, with cases a person can compute by hand."""

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
    from emogen.stages.frontier import load_method_pipeline
    from emogen.layout import Layout

    layout = Layout(tmp_path)
    with pytest.raises(UserError, match=r"models/baselines/dreambooth.*dvc repro baseline@dreambooth"):
        load_method_pipeline(layout, "dreambooth", "cpu")
    with pytest.raises(UserError, match=r"models/emogen.*dvc repro generate"):
        load_method_pipeline(layout, "emogen", "cpu")
