"""The flat network description: validation of hand-written networks and counts."""

import json

import pytest

from search_spaces import SpecError, get_preset
from search_spaces.fileio import write_json_atomic
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


# -- format version 2 ----------------------------------------------------------

def _v2():
    """Every version-2 op once, shapes worked out by hand."""
    def layer(name, op, inputs, ishape, oshape, **kw):
        return {"name": name, "op": op, "inputs": inputs, "input_shape": ishape,
                "output_shape": oshape, **kw}

    return {
        "format": "tunas-jax/network", "format_version": 2, "name": "v2",
        "input_shape": [17, 17, 8],
        "layers": [
            # Inception's 1x7 then 7x1, explicit padding.
            layer("c17", "conv2d", ["input"], [17, 17, 8], [17, 17, 16], kernel_size=[1, 7],
                  padding=[0, 0, 3, 3]),
            layer("c71", "conv2d", ["c17"], [17, 17, 16], [17, 17, 16], kernel_size=[7, 1],
                  padding=[3, 3, 0, 0]),
            # Dilated 3x3 'valid': 17 - 2*2 = 13; rectangular stride (2, 1).
            layer("dil", "conv2d", ["c71"], [17, 17, 16], [7, 13, 16], kernel_size=3,
                  dilation=2, stride=[2, 1], padding="valid"),
            # Depthwise with multiplier 2.
            layer("dwm", "conv2d", ["dil"], [7, 13, 16], [7, 13, 32], kernel_size=3,
                  groups=16),
            layer("bn", "batch_norm", ["dwm"], [7, 13, 32], [7, 13, 32]),
            layer("act", "activation", ["bn"], [7, 13, 32], [7, 13, 32],
                  activation="hard_swish"),
            layer("gap", "pool", ["act"], [7, 13, 32], [1, 1, 32], pool_type="avg",
                  kernel_size=[7, 13], stride=1, padding="valid", **{"global": True}),
            layer("se", "mul", ["act", "gap"], [7, 13, 32], [7, 13, 32]),
            layer("pool", "pool", ["se"], [7, 13, 32], [3, 4, 32], pool_type="max",
                  kernel_size=[3, 4], stride=[2, 3], padding="valid"),
            layer("up", "resize", ["pool"], [3, 4, 32], [6, 8, 32], mode="bilinear"),
            # Transposed conv 3x3 stride 2, pads (1, 1), output_padding 1: (3-1)*2+3-2+1 = 6.
            layer("tconv", "conv2d_transpose", ["pool"], [3, 4, 32], [6, 8, 8], kernel_size=3,
                  stride=2, padding=[1, 1, 1, 1], output_padding=1),
            layer("cat", "concat", ["up", "tconv"], [6, 8, 32], [6, 8, 40]),
            layer("tok", "reshape", ["cat"], [6, 8, 40], [1, 48, 40]),
            layer("ln", "layer_norm", ["tok"], [1, 48, 40], [1, 48, 40]),
            layer("attn", "attention", ["ln"], [1, 48, 40], [1, 48, 40], num_heads=4,
                  use_bias=True),
            layer("scores", "matmul", ["attn", "ln"], [1, 48, 40], [1, 48, 48],
                  transpose_b=True),
            layer("sm", "softmax", ["scores"], [1, 48, 48], [1, 48, 48]),
            layer("am", "argmax", ["sm"], [1, 48, 48], [1, 48, 1]),
            layer("flat", "flatten", ["attn"], [1, 48, 40], [1, 1, 1920]),
            layer("fc", "fully_connected", ["flat"], [1, 1, 1920], [1, 1, 10], use_bias=True),
            layer("res", "add", ["attn", "ln"], [1, 48, 40], [1, 48, 40], activation="relu"),
        ],
    }


def test_v2_description_counts():
    net = NetworkDescription.from_json(_v2())
    by = {layer.name: layer for layer in net.layers}
    assert by["c17"].params == 7 * 8 * 16 and by["c17"].macs == 17 * 17 * 7 * 8 * 16
    assert by["dil"].macs == 7 * 13 * 9 * 16 * 16
    assert by["dwm"].params == 9 * 1 * 32 and by["dwm"].macs == 7 * 13 * 9 * 32
    assert by["bn"].params == 64 and by["ln"].params == 80 and by["bn"].macs == 0
    # Transposed conv: every input pixel scatters a 3x3x(32 -> 8) kernel.
    assert by["tconv"].params == 9 * 32 * 8 and by["tconv"].macs == 3 * 4 * 9 * 32 * 8
    assert by["attn"].params == 4 * 40 * 40 + 4 * 40
    assert by["attn"].macs == 4 * 48 * 40 * 40 + 2 * 48 * 48 * 40
    assert by["scores"].macs == 48 * 48 * 40 and by["scores"].params == 0
    assert by["fc"].params == 1920 * 10 + 10
    assert by["c17"].kernel_hw == (1, 7) and by["dil"].stride_hw == (2, 1)


def test_v2_round_trip_and_version(tmp_path):
    net = NetworkDescription.from_json(_v2())
    doc = net.to_json()
    assert doc["format_version"] == 2
    assert NetworkDescription.from_json(json.loads(json.dumps(doc))) == net
    # Square pairs collapse to ints, so [3, 3] and 3 describe the same layer.
    square = _v2()
    square["layers"][3]["kernel_size"] = [3, 3]
    assert NetworkDescription.from_json(square) == net
    path = tmp_path / "v2.json"
    write_json_atomic(path, doc)
    assert load(path) == net


def test_v1_only_descriptions_still_write_version_1():
    assert NetworkDescription.from_json(_tiny()).to_json()["format_version"] == 1
    # ... and a v1 file cannot smuggle in version-2 features.
    doc = _tiny()
    doc["layers"][0]["kernel_size"] = [1, 3]  # 'same' padding: the shapes stay
    with pytest.raises(SpecError, match="format_version: 1, but the layers use version 2"):
        NetworkDescription.from_json(doc)
    doc = _tiny()
    doc["layers"][1]["dilation"] = 2  # a dilated conv is version 2 even with square sizes
    net = NetworkDescription.from_json({**doc, "format_version": 2})
    assert net.to_json()["format_version"] == 2
    doc["layers"][4]["dilation"] = 2
    with pytest.raises(SpecError, match="unknown key"):
        NetworkDescription.from_json(doc)


def test_shipped_v1_network_files_still_load_unchanged():
    from cost_models import NETWORKS_DIR

    for name in ("mobilenet_v2", "resnet50_v1", "vgg16"):
        path = f"{NETWORKS_DIR}/{name}.json"
        with open(path) as f:
            doc = json.load(f)
        assert doc["format_version"] == 1
        assert load(path).to_json() == doc  # byte-for-byte the same document


@pytest.mark.parametrize("index, change, message", [
    (0, {"padding": [0, 0, 3]}, r"layers\[0\] \('c17'\)\.padding"),
    (0, {"kernel_size": [1, 0]}, r"\('c17'\)\.kernel_size"),
    (2, {"output_shape": [8, 13, 16]}, r"\('dil'\)\.output_shape: \[8, 13, 16\] but the "
                                       r"layer computes \[7, 13, 16\]"),
    (4, {"groups": 2}, r"\('bn'\)\.groups: 2 but op 'batch_norm' does not use it"),
    (5, {"activation": "mish"}, r"\('act'\)\.activation: 'mish' is unknown"),
    (5, {"activation": None}, r"\('act'\)\.activation: missing"),
    (9, {"mode": "cubic"}, r"\('up'\)\.mode"),
    (11, {"inputs": ["up", "tok"]}, r"\('cat'\)\.inputs: 'tok' is not an earlier layer"),
    (11, {"inputs": ["up", "act"]}, r"\('cat'\)\.inputs: concat inputs"),
    (12, {"output_shape": [1, 48, 41]}, r"\('tok'\)\.output_shape: .* elements"),
    (14, {"num_heads": 3}, r"\('attn'\)\.num_heads: 3 must divide"),
    (15, {"transpose_b": False}, r"\('scores'\)\.inputs: matmul operands"),
    (7, {"inputs": ["act", "c17"]}, r"\('se'\)\.inputs: mul inputs .* do not broadcast"),
    (8, {"kernel_size": [9, 4]}, r"\('pool'\)\.kernel_size: the window"),
    (19, {"inputs": ["attn"], "input_shape": [1, 48, 40]}, r"\('fc'\)\.input_shape: "
                                                           "fully_connected needs a 1x1"),
])
def test_bad_v2_descriptions_name_layer_and_field(index, change, message):
    doc = _v2()
    doc["layers"][index].update(change)
    with pytest.raises(SpecError, match=message):
        NetworkDescription.from_json(doc)
