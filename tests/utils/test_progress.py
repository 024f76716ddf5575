"""utils/progress.py: tqdm on a terminal, a few log lines (never a carriage return) in a log."""

from __future__ import annotations

import logging

import pytest
from tqdm.std import tqdm as std_tqdm

from medclip_residuals.utils import progress
from medclip_residuals.utils.progress import LoggedProgress, progress_bar


@pytest.fixture
def in_a_log(monkeypatch):
    """Output that is not a terminal, and no floor on the time between two lines."""
    monkeypatch.setattr(progress, "interactive_output", lambda: False)
    monkeypatch.setattr(progress, "LOG_MIN_INTERVAL_S", 0.0)


def _lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == progress.logger.name]


def test_in_a_log_a_bar_is_a_line_per_tenth_and_writes_no_carriage_return(in_a_log, caplog, capsys):
    caplog.set_level(logging.INFO, logger=progress.logger.name)
    for _ in progress_bar(range(200), desc="heatmaps", unit="batch"):
        pass
    lines = _lines(caplog)
    assert len(lines) == 10  # 10%, 20%, ..., 90% and the end
    assert lines[0].startswith("heatmaps:  10% 20/200") and lines[-1].startswith("heatmaps: 100% 200/200")
    captured = capsys.readouterr()
    assert "\r" not in captured.err + captured.out + "".join(lines)


def test_a_manual_bar_logs_its_end_with_its_postfix(in_a_log, caplog):
    caplog.set_level(logging.INFO, logger=progress.logger.name)
    with progress_bar(total=72, desc="embedding images", unit="img", log_lines=1) as bar:
        for _ in range(9):
            bar.update(8)
            bar.set_postfix(loss="0.500")
    assert len(_lines(caplog)) == 1
    assert _lines(caplog)[0].startswith("embedding images: 100% 72/72") and "loss=0.500" in _lines(caplog)[0]


def test_log_lines_zero_and_disable_are_silent_in_a_log(in_a_log, caplog):
    caplog.set_level(logging.INFO, logger=progress.logger.name)
    assert list(progress_bar(range(5), desc="epoch 1/2", log_lines=0)) == list(range(5))
    assert list(progress_bar(range(5), desc="off", disable=True)) == list(range(5))
    assert _lines(caplog) == []


def test_a_short_bar_logs_only_its_end(monkeypatch, caplog):
    monkeypatch.setattr(progress, "interactive_output", lambda: False)  # the real 10 s floor
    caplog.set_level(logging.INFO, logger=progress.logger.name)
    for _ in progress_bar(range(50), desc="quick"):
        pass
    assert [line.split(" [")[0] for line in _lines(caplog)] == ["quick: 100% 50/50"]


def test_on_a_terminal_it_is_plain_tqdm(monkeypatch):
    monkeypatch.setattr(progress, "interactive_output", lambda: True)
    bar = progress_bar(range(3), desc="x", disable=True)
    assert isinstance(bar, std_tqdm) and not isinstance(bar, LoggedProgress)
    assert list(bar) == [0, 1, 2]


def test_pytest_output_is_not_interactive():
    # under pytest stderr is captured: what a log file sees
    assert progress.interactive_output() is False
