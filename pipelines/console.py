"""A local pipeline run's console: progress, not plumbing.

kfp.local prints every task's executor input, streamed logs and outputs to
``sys.stdout``. While a run lasts, :func:`stage_console` puts a writer in its place that:

1. copies everything to ``<run folder>/pipeline.log``;
2. prints one line when a task starts and one when it ends, with its time and its scalar
   output when it has one (the gate value, the parity verdict, the registered version);
3. shows the components' progress bars on one overwritten line (terminals only);
4. on a failure, prints the last lines of the log and where the whole log is.

``verbose`` keeps kfp.local's full stream (``make run VERBOSE=1``).
"""

from __future__ import annotations

import collections
import contextlib
import re
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

ANSI = re.compile(r"\x1b\[[0-9;]*m")
STARTED = re.compile(r"Executing task '([^']+)'")
FINISHED = re.compile(r"Task '([^']+)' finished with status (\w+)")
OUTPUTS = re.compile(r"Task '([^']+)' outputs:")
SCALAR = re.compile(r"^\s+Output: (.{1,60})$")
SKIPPED = re.compile(r"Skipping (?:conditional )?task '?([\w-]+)'?")
PROGRESS = re.compile(r"\d+%\|")
TAIL_LINES = 40


class StageWriter:
    """A file-like ``sys.stdout`` for the run: the log gets everything, the console a
    summary. Thread-safe: a ParallelFor's tasks print from several threads."""

    def __init__(self, log: TextIO, console: TextIO):
        self.log, self.console = log, console
        self.lock = threading.Lock()
        self.partial = ""
        self.started: dict[str, float] = {}
        self.listing: str | None = None  # the task whose outputs kfp is printing
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self.progress_shown = False
        self.failed: list[str] = []

    def write(self, text: str) -> int:
        with self.lock:
            self.log.write(text)
            lines = (self.partial + text).replace("\r", "\n").split("\n")
            self.partial = lines.pop()
            for line in lines:
                self._line(ANSI.sub("", line))
        return len(text)

    def flush(self) -> None:
        with self.lock:
            self.log.flush()
            self.console.flush()

    def isatty(self) -> bool:
        return False

    def _say(self, text: str) -> None:
        if self.progress_shown:
            self.console.write("\r\x1b[2K")
            self.progress_shown = False
        self.console.write(text + "\n")

    def _line(self, line: str) -> None:
        if line.strip():
            self.tail.append(line)
        if not line.startswith(" "):  # kfp indents an outputs listing; anything else ends it
            self.listing = None
        if match := STARTED.search(line):
            self.started[match[1]] = time.monotonic()
            self._say(f"  ▶ {match[1]}")
        elif match := FINISHED.search(line):
            seconds = time.monotonic() - self.started.get(match[1], time.monotonic())
            ok = match[2] == "SUCCESS"
            self._say(f"  {'✓' if ok else '✗'} {match[1]} ({seconds:.0f} s)"
                      + ("" if ok else f": {match[2]}"))
            if not ok:
                self.failed.append(match[1])
        elif match := OUTPUTS.search(line):
            self.listing = match[1]
        elif self.listing and (match := SCALAR.match(line)):
            self._say(f"      {self.listing} → {match[1].strip()}")
        elif match := SKIPPED.search(line):
            self._say(f"  – {match[1]} skipped (its condition is false)")
        elif PROGRESS.search(line) and self.console.isatty():
            self.console.write("\r\x1b[2K    " + line.strip()[:100])
            self.progress_shown = True

    def report_failure(self, log_path: Path) -> None:
        self._say(f"--- the last {len(self.tail)} lines of {log_path} ---")
        for line in self.tail:
            self.console.write(line + "\n")
        self._say(f"--- the full log: {log_path}")


@contextlib.contextmanager
def stage_console(log_path: Path, verbose: bool = False) -> Iterator[StageWriter | None]:
    """Send the run's stdout and stderr to ``log_path``, with a summary on the console."""
    if verbose:
        yield None
        return
    log_path.parent.mkdir(parents=True, exist_ok=True)
    console = sys.stdout
    with open(log_path, "a", encoding="utf-8") as log:
        writer = StageWriter(log, console)
        try:
            with contextlib.redirect_stdout(writer), contextlib.redirect_stderr(writer):
                yield writer
        except BaseException:
            writer.report_failure(log_path)
            raise
        finally:
            writer.flush()
    console.write(f"  full log: {log_path}\n")
