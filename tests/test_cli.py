"""End-to-end tests of the foundation CLI commands (`show`, `spaces`)."""

import json

import pytest

from search_spaces import Architecture, get_space
from tunas_jax.cli import main


def test_show_preset_json(capsys):
    assert main(["show", "--preset", "mobilenet_edgetpu_v1", "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["params"] == 4_092_713
    assert isinstance(out["macs"], int) and out["macs"] > 0


def test_show_architecture_file_table(tmp_path, capsys):
    space = get_space("micro")
    Architecture.from_indices(space, [0] * space.num_decisions).save(tmp_path / "a.json")
    assert main(["show", "--architecture", str(tmp_path / "a.json"), "--space", "micro"]) == 0
    out = capsys.readouterr().out
    assert "trainable params" in out and "dw_ibn" in out


def test_show_bad_input_is_one_line_exit_2(tmp_path, capsys):
    (tmp_path / "bad.json").write_text("{")
    assert main(["show", "--architecture", str(tmp_path / "bad.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert "malformed JSON" in err and "\n" not in err
    assert main(["show", "--preset", "mobilenet_edgetpu_v1", "--space", "micro"]) == 2
    assert "not a member" in capsys.readouterr().err


def test_spaces_lists_every_space(capsys):
    assert main(["spaces", "--format", "json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == {"micro", "mobilenet_edgetpu_v2", "proxylessnas"}
    assert "mobilenet_edgetpu_v2_s" in rows["mobilenet_edgetpu_v2"]["member_presets"]


def test_unknown_argument_is_a_usage_error():
    with pytest.raises(SystemExit) as err:
        main(["show", "--bogus"])
    assert err.value.code == 2
