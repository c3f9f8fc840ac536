"""Progress lines with an ETA for long loops that log rather than draw (decoding jobs write
to log files, where a tqdm bar would be one unreadable line)."""

from __future__ import annotations

import logging
import time
from typing import Optional

logger = logging.getLogger(__name__)


class ProgressLog:
    """Logs ``what: i/N (p%), elapsed, ETA`` about every ``every_percent`` of ``total`` items.

    Args:
        total: number of items expected (``None``/0: counts without percentages or ETA).
        what: the noun logged, e.g. ``"decoded utterances"``.
        every_percent: spacing of the lines.
    """

    def __init__(self, total: Optional[int], what: str, every_percent: float = 10.0):
        self.total = total or 0
        self.what = what
        self.done = 0
        self.start = time.perf_counter()
        self.step = max(1, int(self.total * every_percent / 100)) if self.total else 10
        self.last_line = ""

    def tick(self, n: int = 1) -> None:
        """Count ``n`` more finished items; log when a step boundary or the end is crossed."""
        before = self.done
        self.done += n
        if self.done // self.step == before // self.step and self.done != self.total:
            return
        elapsed = time.perf_counter() - self.start
        if self.total:
            eta = elapsed / self.done * max(0, self.total - self.done)
            self.last_line = (
                f"{self.what}: {self.done}/{self.total} ({100 * self.done / self.total:.0f}%), "
                f"{elapsed:.0f} s elapsed, ETA {eta:.0f} s"
            )
        else:
            self.last_line = f"{self.what}: {self.done}, {elapsed:.0f} s elapsed"
        logger.info(self.last_line)
