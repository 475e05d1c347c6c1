"""The random-search baseline: band sampling, the plan a rerun reuses, bad input."""

import os

import numpy as np
import pytest

import cost_models
from search_spaces import get_space, load
from tasks import describe
from tunas_jax import random_baseline, train
from tunas_jax.errors import UsageError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MICRO_DIGITS = os.path.join(REPO, "experiments", "train", "micro_digits.py")
BAND = (0.008, 0.010)  # ms, 'layers' metric at 32 px: around micro's median


def config():
    return train.load_train_config(MICRO_DIGITS)


def test_sampled_architectures_are_in_the_band_by_the_simulator():
    space = get_space("micro")
    indices, latency_ms = random_baseline.sample_in_band(space, config(), 5, *BAND, seed=3)
    assert indices.shape == (5, space.num_decisions)
    assert len({tuple(row) for row in indices}) == 5
    fixed = cost_models.fixed_latency_ms("pixel6_edgetpu", 32, 10)
    for row, ms in zip(indices, latency_ms, strict=True):
        assert BAND[0] <= ms <= BAND[1]
        whole = cost_models.simulate(describe(space.decode(row), 32, 10), "pixel6_edgetpu")
        assert ms == pytest.approx(whole.latency_ms - fixed, abs=1e-12)
    again, _ = random_baseline.sample_in_band(space, config(), 5, *BAND, seed=3)
    np.testing.assert_array_equal(indices, again)


def test_plan_is_written_once_and_reused_and_other_requests_refused(tmp_path):
    space = get_space("micro")
    plan = random_baseline._plan(str(tmp_path), space, config(), 3, BAND, 0)
    assert [a["name"] for a in plan["architectures"]] == ["arch_00", "arch_01", "arch_02"]
    arch = load(tmp_path / "architectures" / "arch_01.json")
    assert list(arch.indices) == plan["architectures"][1]["indices"]
    assert random_baseline._plan(str(tmp_path), space, config(), 3, BAND, 0) == plan
    with pytest.raises(UsageError, match="latency_band_ms"):
        random_baseline._plan(str(tmp_path), space, config(), 3, (0.008, 0.011), 0)
    with pytest.raises(UsageError, match="seed"):
        random_baseline._plan(str(tmp_path), space, config(), 3, BAND, 1)
    other_recipe = config()
    other_recipe.learning_rate = 0.1
    with pytest.raises(UsageError, match="recipe"):
        random_baseline._plan(str(tmp_path), space, other_recipe, 3, BAND, 0)


@pytest.mark.parametrize("text", ["0.01", "a,b", "0.02,0.01", "-1,2", "1,2,3"])
def test_bad_band_names_the_option(text):
    with pytest.raises(UsageError, match="--latency-band"):
        random_baseline.parse_band(text)


def test_empty_band_says_what_latencies_exist():
    with pytest.raises(UsageError, match=r"--latency-band.*observed latencies"):
        random_baseline.sample_in_band(get_space("micro"), config(), 2, 5.0, 6.0, seed=0,
                                       max_tries=8192)


def test_summary_statistics():
    assert random_baseline.summarize([0.9, 0.7, 0.8, 1.0], "top1") == pytest.approx(
        {"mean_top1": 0.85, "median_top1": 0.85, "min_top1": 0.7, "max_top1": 1.0})
