"""The §4.3 block study: GC-IBNs near Fused utilization at near-Depthwise latency late."""

from __future__ import annotations

import argparse
import json

import pytest

from cost_models.block_analyzer import analyze, format_table, plot
from tunas_jax.commands import analyze_blocks

DEEP = ("14x14x160", "7x7x256")


@pytest.fixture(scope="module", params=["pixel6_edgetpu", "coral_edgetpu"])
def rows(request):
    return analyze(request.param)


def _pick(rows, shape):
    sub = [r for r in rows if r.shape == shape]
    dw = next(r for r in sub if r.block_type == "dw_ibn")
    fused = next(r for r in sub if r.block_type == "fused_ibn")
    gc = sorted((r for r in sub if r.block_type == "gc_ibn"), key=lambda r: r.group_size)
    return dw, fused, gc


@pytest.mark.parametrize("shape", DEEP)
def test_deep_stages_gc_near_fused_utilization_near_dw_latency(rows, shape):
    dw, fused, gc = _pick(rows, shape)
    largest = gc[-1]
    assert largest.group_size >= 128
    # Utilization: depthwise far below; large-group GC close to fused.
    assert dw.kxk_utilization < 0.05
    assert largest.kxk_utilization > 0.85 * fused.kxk_utilization
    # Latency: large-group GC within 25% of DW-IBN; fused far more expensive.
    assert largest.latency_ms < 1.25 * dw.latency_ms
    assert fused.latency_ms > 1.5 * dw.latency_ms
    assert fused.latency_ms > 2.0 * largest.latency_ms
    # GC buys parameters and MACs above DW-IBN for that latency.
    assert largest.params > dw.params and largest.macs > dw.macs


def test_utilization_grows_with_group_size(rows):
    for shape in {r.shape for r in rows}:
        _, _, gc = _pick(rows, shape)
        util = [r.kxk_utilization for r in gc]
        assert util == sorted(util), (shape, util)


def test_fused_cheap_early_expensive_late(rows):
    early_dw, early_fused, _ = _pick(rows, "112x112x24")
    late_dw, late_fused, _ = _pick(rows, "7x7x256")
    assert early_fused.latency_ms / early_dw.latency_ms < late_fused.latency_ms / late_dw.latency_ms
    assert "gc_ibn/g64" in format_table(rows)


def test_command_writes_plot_and_rows(tmp_path):
    parser = argparse.ArgumentParser()
    analyze_blocks.add_parser(parser.add_subparsers())
    args = parser.parse_args(["analyze-blocks", "--target", "coral_edgetpu",
                              "--out", str(tmp_path)])
    assert args.func(args) == 0
    png = tmp_path / "blocks_coral_edgetpu.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    doc = json.loads((tmp_path / "blocks_coral_edgetpu.json").read_text())
    assert doc["target"] == "coral_edgetpu" and len(doc["rows"]) > 20


def test_plot_single_shape(tmp_path):
    rows = analyze("pixel6_edgetpu", shapes=(("7x7x256", 7, 256),))
    assert plot(rows, str(tmp_path / "p.png")).endswith("p.png")
