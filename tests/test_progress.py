"""Progress off a terminal: whole log lines now and then, the last one always."""

from tunas_jax import progress as progress_lib


def test_off_a_terminal_progress_is_throttled_log_lines(capsys, monkeypatch):
    monkeypatch.setattr(progress_lib, "LOG_EVERY_S", 3600.0)  # only the first and the last
    with progress_lib.progress(total=50, desc="search", unit="step") as bar:
        for _ in range(50):
            bar.update(1)
            bar.set_postfix(loss="0.5")
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = err.splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith("search:   0%") and "0/50" in lines[0]
    assert lines[1].startswith("search: 100%") and "50/50" in lines[1] and "loss=0.5" in lines[1]


def test_disabled_progress_writes_nothing(capsys):
    with progress_lib.progress(total=3, disable=True) as bar:
        bar.update(3)
    assert capsys.readouterr().err == ""
