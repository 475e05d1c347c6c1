"""`host_cpu`: measured latency of the standalone model on this machine's CPU."""

from __future__ import annotations

import json

import numpy as np
import pytest

from search_spaces import SpecError, get_space
from tunas_jax.cli import main as cli_main
from tunas_jax.host_latency import Measurement, measure_latency


def test_measurement_statistics():
    m = Measurement("x", 32, 1, 0, (1.0, 2.0, 3.0, 4.0, 100.0), 0.5, "cpu")
    assert m.median_ms == 3.0 and m.min_ms == 1.0  # the slow outlier moves neither
    assert m.relative_iqr == pytest.approx((4.0 - 2.0) / 3.0)
    doc = m.to_json()
    assert doc["target"] == "host_cpu" and doc["repeats"] == 5


def test_measure_a_micro_architecture():
    space = get_space("micro")
    spec = space.decode(space.sample(np.random.default_rng(0), 1)[0])
    m = measure_latency(spec, 32, 10, warmup=1, repeats=4)
    assert len(m.samples_ms) == 4 and all(s > 0 for s in m.samples_ms)
    assert m.compile_s > 0 and "cpu" in m.device.lower()
    with pytest.raises(SpecError, match="repeats: 0 must be an integer >= 1"):
        measure_latency(spec, 32, 10, repeats=0)


def test_measure_command(tmp_path, capsys):
    out = tmp_path / "host.json"
    assert cli_main(["measure", "--space", "micro", "--sample", "2", "--warmup", "1",
                     "--repeats", "3", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["target"] == "host_cpu" and len(doc["measurements"]) == 2
    assert all(len(m["samples_ms"]) == 3 for m in doc["measurements"])
    assert "median_ms" in capsys.readouterr().out
    assert cli_main(["measure", "--sample", "2"]) == 2
    assert "--sample needs --space" in capsys.readouterr().err
