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
    assert set(rows) == {"autoseg", "autoseg_micro", "micro", "mobilenet_edgetpu_v2",
                         "mobilenet_multi", "proxylessnas"}
    assert "mobilenet_edgetpu_v2_s" in rows["mobilenet_edgetpu_v2"]["member_presets"]
    assert set(rows["mobilenet_multi"]["member_presets"]) == {"mobilenet_multi_avg",
                                                              "mobilenet_multi_max"}


def test_unknown_argument_is_a_usage_error():
    with pytest.raises(SystemExit) as err:
        main(["show", "--bogus"])
    assert err.value.code == 2


# ---- config files and their overrides (ml_collections.config_flags) ------------------------
TRAIN_CONFIG = "experiments/train/micro_digits.py"


@pytest.mark.parametrize("override, words", [
    ("--config.batch_sise=8", "--config.batch_sise: unknown field 'batch_sise'; did you mean "
                              "'batch_size'?"),
    ("--config.batch_size=eight", "--config.batch_size=eight: expected an int"),
    ("--config.dataset.image_size=1.5", "--config.dataset.image_size=1.5: expected an int"),
    ("--config.dataset.nme=x", "--config.dataset.nme: unknown field 'nme'"),
    ("--config.seed.x=1", "--config.seed.x: seed is a value, not a section"),
])
def test_bad_config_override_is_one_line_exit_2(override, words, tmp_path, capsys):
    argv = ["train", "--config", TRAIN_CONFIG, "--workdir", str(tmp_path / "w"), override]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("tunas-jax train: error: ") and words in err
    assert not (tmp_path / "w").exists()  # refused before anything ran


def test_config_overrides_are_typed_and_nested():
    from tunas_jax.config_files import load_config

    config = load_config(TRAIN_CONFIG, {"batch_size": "8", "dataset.image_size": 16,
                                        "nesterov": "false", "learning_rate": "1e-3"})
    assert (config.batch_size, config.dataset.image_size) == (8, 16)
    assert config.nesterov is False and config.learning_rate == 1e-3
    cost = load_config("experiments/cost_models/micro_pixel6.py",
                       {"hidden_sizes": "(8, 4)", "image_size": "12"})
    assert cost.hidden_sizes == (8, 4) and cost.image_size == 12  # a None placeholder, typed
    from tunas_jax.errors import UsageError
    with pytest.raises(UsageError, match=r"hidden_sizes=\('abc',\): expected a tuple of int"):
        load_config("experiments/cost_models/micro_pixel6.py", {"hidden_sizes": "abc"})


def test_missing_config_file_and_stray_argument(tmp_path, capsys):
    assert main(["train", "--config", str(tmp_path / "nope.py"), "--workdir",
                 str(tmp_path / "w")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["train", "--config", TRAIN_CONFIG, "--workdir", str(tmp_path / "w"),
                 "--bogus"]) == 2
    err = capsys.readouterr().err
    assert "bogus" in err and err.count("\n") == 1


def test_help_lists_the_config_fields(capsys):
    with pytest.raises(SystemExit):
        main(["train-cost-model", "--help"])
    out = capsys.readouterr().out
    assert "--config.hidden_sizes=(128, 128)" in out and "--config FILE.py" in out


@pytest.mark.parametrize("command", [
    ["search", "--config", "experiments/search/micro_digits.py"],
    ["train", "--config", TRAIN_CONFIG, "--config.architecture=preset:mobilenet_edgetpu_v1"],
    ["train-cost-model", "--config", "experiments/cost_models/micro_pixel6.py"],
])
def test_workdir_that_is_a_file_is_one_line_exit_2(command, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    for workdir in (blocker, blocker / "sub"):
        assert main([*command, "--workdir", str(workdir)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err
        assert f"--workdir {workdir}: a file is in the way" in err
    assert blocker.read_text() == "not a folder"


@pytest.mark.parametrize("flags, message", [
    (["--coordinator", "127.0.0.1:1"], "go together: pass all three"),
    (["--coordinator", "nohost", "--num-processes", "2", "--process-id", "0"], "HOST:PORT"),
    (["--coordinator", "127.0.0.1:1", "--num-processes", "2", "--process-id", "2"],
     "must be in 0..N-1"),
])
def test_search_process_options_are_checked_before_anything_runs(flags, message, tmp_path,
                                                                 capsys):
    assert main(["search", "--config", "experiments/search/micro_digits.py", "--workdir",
                 str(tmp_path / "w"), *flags]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert not (tmp_path / "w").exists()
