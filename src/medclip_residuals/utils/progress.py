"""Progress bars that stay readable in a log: `progress_bar` is the project's one tqdm.

On a terminal (or in a notebook) it is tqdm as usual. When stderr is not a terminal (a
`make run > run.log`, CI, a subprocess whose output is captured), a redrawn bar would write a
carriage return per update into the file; instead the bar becomes log lines: one each time
progress crosses another tenth of the total (`log_lines`), at most one per
`LOG_MIN_INTERVAL_S`, and one when it ends. `log_lines=0` keeps a bar silent in a log, for a
loop that logs its own summary (one line per training epoch).

Why a subclass of tqdm, not `tqdm(disable=True)` or `tqdm.contrib.logging`: the bar's own
counters, rate and postfix make the log line, and `logging_redirect_tqdm` only routes log
records around a bar that still redraws with carriage returns.

Example:
    >>> for batch in progress_bar(range(3), desc="heatmaps", unit="batch"):  # doctest: +SKIP
    ...     pass
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Iterable
from typing import Any

from tqdm.auto import tqdm as auto_tqdm
from tqdm.std import tqdm as std_tqdm

logger = logging.getLogger(__name__)

# A long bar (heatmaps, a large embedding) logs about every tenth; a short one only its end.
LOG_MIN_INTERVAL_S = 10.0
LOG_BAR_FORMAT = "{desc}: {percentage:3.0f}% {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}{postfix}]"
LOG_BAR_FORMAT_NO_TOTAL = "{desc}: {n_fmt} [{elapsed}, {rate_fmt}{postfix}]"


def interactive_output() -> bool:
    """True on a terminal or in a Jupyter kernel, where a redrawn bar is what a person sees."""
    try:
        if sys.stderr is not None and sys.stderr.isatty():
            return True
    except (AttributeError, ValueError):  # a closed or replaced stream
        return False
    shell = sys.modules.get("IPython")
    get_ipython = getattr(shell, "get_ipython", None)
    return get_ipython is not None and type(get_ipython()).__name__ == "ZMQInteractiveShell"


class _NullWriter:
    """Where the logged bar's tqdm would draw: nowhere (the lines go to the logger)."""

    def write(self, _text: str) -> None:
        return None

    def flush(self) -> None:
        return None


class LoggedProgress(std_tqdm):
    """A tqdm that draws nothing and logs a line per `log_lines`-th of the total and at its end."""

    def __init__(self, *args: Any, log_lines: int = 10, **kwargs: Any) -> None:
        self._log_lines = max(0, int(log_lines))
        self._logged_mark = 0
        self._last_logged = time.monotonic()
        self._ended = False
        kwargs.setdefault("bar_format", LOG_BAR_FORMAT if kwargs.get("total") is not None or _has_len(args) else LOG_BAR_FORMAT_NO_TOTAL)
        # every update reaches display(), which decides cheaply whether to log
        kwargs.update(file=_NullWriter(), mininterval=0, miniters=1, dynamic_ncols=False, ncols=0)
        super().__init__(*args, **kwargs)

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        if self._ended or not self._log_lines or not self.total or self.n <= 0:
            return True
        mark = math.floor(self._log_lines * min(self.n, self.total) / self.total)
        now = time.monotonic()
        if mark > self._logged_mark and now - self._last_logged >= LOG_MIN_INTERVAL_S and self.n < self.total:
            self._logged_mark, self._last_logged = mark, now
            logger.info("%s", str(self))  # formatted now: the bar moves on
        return True

    def close(self) -> None:
        if not self._ended and not self.disable and self._log_lines and self.n > 0:
            self._ended = True
            logger.info("%s", str(self))  # formatted now: the bar moves on
        self._ended = True
        super().close()


def _has_len(args: tuple[Any, ...]) -> bool:
    return bool(args) and hasattr(args[0], "__len__")


def progress_bar(
    iterable: Iterable[Any] | None = None,
    *,
    log_lines: int = 10,
    disable: bool = False,
    **kwargs: Any,
) -> std_tqdm:
    """tqdm on a terminal; log lines in a log (see the module's docstring).

    Args:
        iterable: what tqdm wraps (or None, with `total=`, for a manually updated bar).
        log_lines: lines logged over the whole bar when the output is not a terminal (10:
            about every tenth, 0: none, for a loop that logs its own summary).
        disable: no bar and no lines at all.
        **kwargs: tqdm's (desc, total, unit, leave, postfix...).
    """
    if interactive_output():
        return auto_tqdm(iterable, disable=disable, **kwargs)
    return LoggedProgress(iterable, log_lines=log_lines, disable=disable, **kwargs)
