"""The flat network description: validation of hand-written networks and counts."""

import json

import pytest

from search_spaces import SpecError, get_preset
from search_spaces.network import NetworkDescription, load
from tasks import describe


def _tiny():
    return {
        "format": "tunas-jax/network", "format_version": 1, "name": "tiny",
        "input_shape": [8, 8, 3],
        "layers": [
            {"name": "c1", "op": "conv2d", "inputs": ["input"], "input_shape": [8, 8, 3],
             "output_shape": [4, 4, 16], "kernel_size": 3, "stride": 2, "groups": 1,
             "use_bias": False, "batch_norm": True, "activation": "relu"},
            {"name": "dw", "op": "conv2d", "inputs": ["c1"], "input_shape": [4, 4, 16],
             "output_shape": [4, 4, 16], "kernel_size": 3, "stride": 1, "groups": 16},
            {"name": "sum", "op": "add", "inputs": ["dw", "c1"], "input_shape": [4, 4, 16],
             "output_shape": [4, 4, 16]},
            {"name": "cat", "op": "concat", "inputs": ["sum", "c1"], "input_shape": [4, 4, 16],
             "output_shape": [4, 4, 32]},
            {"name": "pool", "op": "pool", "inputs": ["cat"], "input_shape": [4, 4, 32],
             "output_shape": [1, 1, 32], "pool_type": "avg", "global": True},
            {"name": "fc", "op": "fully_connected", "inputs": ["pool"],
             "input_shape": [1, 1, 32], "output_shape": [1, 1, 10], "use_bias": True},
        ],
    }


def test_hand_written_description_counts():
    net = NetworkDescription.from_json(_tiny())
    # c1: 3*3*3*16 + 2*16 BN; dw: 3*3*1*16; fc: 32*10 + 10.
    assert net.params == 432 + 32 + 144 + 330
    assert net.macs == 4 * 4 * 432 + 4 * 4 * 144 + 320


def test_round_trip_through_json(tmp_path):
    net = describe(get_preset("mobilenet_edgetpu_v2_tiny"), 224, 1001)
    path = tmp_path / "n.json"
    path.write_text(json.dumps(net.to_json()))
    assert load(path) == net


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["layers"][0].update(output_shape=[8, 8, 16]), "output_shape"),
    (lambda d: d["layers"][1].update(groups=3), "groups"),
    (lambda d: d["layers"][2].update(inputs=["dw", "nope"]), "not an earlier layer"),
    (lambda d: d["layers"][1].update(op="conv3d"), "unknown"),
    (lambda d: d["layers"][1].update(name="c1"), "duplicate"),
    (lambda d: d["layers"][5].update(inputs=["cat"], input_shape=[4, 4, 32]), "1x1 input"),
    (lambda d: d.update(format="other"), "format"),
])
def test_bad_descriptions_are_refused(mutate, message):
    doc = _tiny()
    mutate(doc)
    with pytest.raises(SpecError, match=message):
        NetworkDescription.from_json(doc)
