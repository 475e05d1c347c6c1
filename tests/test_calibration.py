"""Calibration: reference networks, the shipped fits, and that fitting improves a bad start."""

from __future__ import annotations

import pytest

from cost_models import calibrate, evaluate, get_target, reference_network
from cost_models.calibration import published_rows, scale_width
from search_spaces import SpecError, get_preset


def test_v1_width_variants():
    v1 = get_preset("mobilenet_edgetpu_v1")
    assert scale_width(v1, 1.0) == v1
    assert reference_network("mobilenet_edgetpu_v1_w1.0").params == 4_092_713  # as tested upstream
    widths = [reference_network(f"mobilenet_edgetpu_v1_w{w}").params
              for w in ("1.0", "1.25", "1.5", "1.75")]
    assert widths == sorted(widths) and widths[-1] > 2.5 * widths[0]


@pytest.mark.parametrize("target,max_mean_error", [("pixel6_edgetpu", 5.0),
                                                   ("coral_edgetpu", 5.0)])
def test_shipped_targets_fit_published_latencies(target, max_mean_error):
    report = evaluate(target)
    assert len(report.rows) == len(published_rows(target))
    assert report.mean_abs_error_percent < max_mean_error
    assert report.spearman > 0.95 and report.pearson > 0.95
    assert "Spearman" in report.table()


def test_calibration_improves_a_perturbed_start():
    shipped = get_target("pixel6_edgetpu")
    bad = shipped.replace(compute_efficiency=shipped.compute_efficiency * 0.3,
                          inference_overhead_ms=shipped.inference_overhead_ms * 3)
    fields = ("compute_efficiency", "inference_overhead_ms")
    before, after = calibrate(bad, fields, restarts=1)
    assert before.rms_log_error > 0.5
    assert after.rms_log_error < before.rms_log_error / 5
    assert after.mean_abs_error_percent < 10
    for f in fields:  # it finds its way back near the shipped fit
        assert getattr(after.target, f) == pytest.approx(getattr(shipped, f), rel=0.25)


def test_unknown_target_and_model():
    with pytest.raises(SpecError, match="no published latencies"):
        published_rows("tpu_v9")
    with pytest.raises(SpecError, match="no preset"):
        reference_network("alexnet")
