"""The progress bar on stderr: rows, rows/s and ETA, with tqdm when it is installed, else a plain line."""

from __future__ import annotations

import sys
import time

__all__ = ["Progress", "format_seconds"]


def format_seconds(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


class Progress:
    """``total`` rows of which ``done`` are finished already (skipped shards); :meth:`update` adds rows."""

    def __init__(self, total: int, done: int = 0, enabled: bool = True, stream=None):
        self.total, self.done, self.start_done = total, done, done
        self.stream = stream or sys.stderr
        self.started = time.perf_counter()
        self._bar = None
        self._last = 0.0
        self.enabled = enabled
        if not enabled:
            return
        try:
            from tqdm import tqdm
        except ImportError:
            return
        self._bar = tqdm(
            total=total, initial=done, unit="rows", unit_scale=True, file=self.stream, desc="bertrt batch"
        )

    @property
    def rate(self) -> float:
        elapsed = time.perf_counter() - self.started
        return (self.done - self.start_done) / elapsed if elapsed > 0 else 0.0

    def update(self, rows: int) -> None:
        self.done += rows
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(rows)
            return
        now = time.perf_counter()
        interactive = getattr(self.stream, "isatty", lambda: False)()
        if now - self._last < (1.0 if interactive else 10.0) and self.done < self.total:
            return
        self._last = now
        rate = self.rate
        eta = format_seconds((self.total - self.done) / rate) if rate > 0 else "?"
        percent = 100.0 * self.done / self.total if self.total else 100.0
        line = (
            f"bertrt batch: {self.done:,}/{self.total:,} rows ({percent:.0f}%), {rate:,.0f} rows/s, ETA {eta}"
        )
        self.stream.write(("\r" + line) if interactive else (line + "\n"))
        self.stream.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self.enabled and getattr(self.stream, "isatty", lambda: False)():
            self.stream.write("\n")
            self.stream.flush()
