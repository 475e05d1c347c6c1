"""Search spaces declared as data (`search_spaces/declared.py`): equal to a space module,
clear errors, self-contained architecture files, and a multi-trial study over one."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys

import pytest

import search_spaces
from search_spaces import SpecError
from search_spaces.declared import register_declared, space_from_declaration
from tunas_jax import cli
from tunas_jax.errors import UsageError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(REPO, "experiments", "multi_trial", "declared_topology.py")


def _block(stride, skippable):
    ops = ["dw_ibn", "fused_ibn", "gc_ibn", "grouped_ibn"] + (["skip"] if skippable else [])
    return {"op": ops, "kernel_size": [3, 5], "expansion_ratio": [2, 4],
            "pointwise_expansion": 2, "group_size": [16, 32], "stride": stride}


# The shipped `micro` space (search_spaces/definitions/micro.py), written as data.
MICRO = {
    "name": "micro_as_data", "image_size": 32, "num_classes": 10, "min_group_size": 16,
    "stem": {"filters": 16, "kernel_size": 3, "stride": 2},
    "stages": [{"filters": [16, 24], "blocks": [_block(1, False)]},
               {"filters": [24, 32], "blocks": [_block(2, False), _block(1, True)]},
               {"filters": [48, 64], "blocks": [_block(2, False), _block(1, True)]}],
    "head": {"filters": 128},
}


def test_a_declared_space_is_the_space_its_module_defines():
    declared, shipped = space_from_declaration(MICRO), search_spaces.get_space("micro")
    assert declared.fingerprint == shipped.fingerprint
    assert [(d.name, d.choices, d.tag) for d in declared.decisions] == [
        (d.name, d.choices, d.tag) for d in shipped.decisions]
    assert declared.default_image_size == 32 and declared.min_group_size == 16


def _broken(path, value):
    doc = copy.deepcopy(MICRO)
    *parents, leaf = path
    node = doc
    for key in parents:
        node = node[key]
    if value is KeyError:
        del node[leaf]
    else:
        node[leaf] = value
    return doc


@pytest.mark.parametrize("path,value,field", [
    (("stages", 1, "blocks", 0, "stride"), [1, 2], "topology.stages[1].blocks[0].stride"),
    (("stages", 0, "filters"), [], "topology.stages[0].filters"),
    (("stages", 0, "blocks", 0, "kernel"), 3, "topology.stages[0].blocks[0].kernel"),
    (("stages", 0, "blocks", 0, "op"), ["dw_ibn", 3], "topology.stages[0].blocks[0].op"),
    (("stages", 0, "blocks", 0, "op"), ["dw_ibm"], "dw_ibm"),
    (("stages", 0, "blocks", 0, "op"), ["dw_ibn", "skip"], "skip"),
    (("stem",), KeyError, "topology.stem"),
    (("image_size",), 0, "topology.image_size"),
    (("name",), "my space", "topology.name"),
])
def test_bad_declarations_name_the_field(path, value, field):
    with pytest.raises(SpecError, match=r"^topology") as info:
        space_from_declaration(_broken(path, value))
    assert field in str(info.value)


def test_a_declaration_may_not_take_a_registered_name():
    with pytest.raises(SpecError, match=re.escape("topology.name: 'micro' is a shipped")):
        register_declared({**MICRO, "name": "micro"})
    register_declared(MICRO)
    register_declared(copy.deepcopy(MICRO))  # the same declaration again: fine
    with pytest.raises(SpecError, match="declared differently"):
        register_declared({**MICRO, "head": {"filters": 256}})


def test_an_architecture_file_carries_its_declaration(tmp_path):
    space = register_declared(MICRO)
    arch = search_spaces.Architecture.from_indices(space, [1] * space.num_decisions)
    arch.save(tmp_path / "a.json")
    assert json.loads((tmp_path / "a.json").read_text())["space_declaration"] == MICRO
    # A fresh process, which never saw the declaration, rebuilds the space from the file.
    code = ("import search_spaces, sys; a = search_spaces.load(sys.argv[1]); "
            "print(a.space.name, a.space.fingerprint, a.spec.blocks[0].block_type.value)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "a.json")], cwd=REPO,
                         capture_output=True, text=True, check=True, timeout=120).stdout.split()
    assert out == ["micro_as_data", space.fingerprint, arch.spec.blocks[0].block_type.value]


def test_config_space_must_name_the_declaration():
    from tunas_jax.config_files import load_config

    with pytest.raises(UsageError, match=re.escape(
            "config.space: 'micro', but config.topology declares 'digits_ibn'")):
        load_config(CONFIG, {"space": "micro"})
    with pytest.raises(UsageError, match=re.escape("config.topology.stem.stride")):
        load_config(CONFIG, {"topology.stem.stride": 0})


def test_multi_trial_study_over_a_declared_topology(tmp_path):
    """Two worker processes (which rebuild the space from the config they are sent),
    then `report` on the study."""
    tiny = {"num_trials": 2, "population_size": 2, "tournament_size": 1, "workers": 2,
            "proxy.dataset.image_size": 8, "proxy.num_epochs": 0, "proxy.num_steps": 2,
            "proxy.batch_size": 32, "proxy.eval_batch_size": 256, "proxy.num_threads": 1,
            "proxy.log_every_steps": 1, "proxy.ema_decay": 0.0}
    args = ["multi-trial", "--config", CONFIG, "--workdir", str(tmp_path)]
    assert cli.main(args + [f"--config.{k}={v}" for k, v in tiny.items()]) == 0
    trials = [json.loads(line) for line in (tmp_path / "trials.jsonl").read_text().splitlines()]
    assert [t["state"] for t in trials] == ["completed", "completed"]
    doc = json.loads((tmp_path / "architecture.json").read_text())
    assert doc["space"] == "digits_ibn" and doc["space_declaration"]["name"] == "digits_ibn"
    assert cli.main(["report", str(tmp_path), "--out", str(tmp_path / "report")]) == 0
