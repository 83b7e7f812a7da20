"""LiteRT's C++ start-up line, at DEBUG like the rest of the libraries' chatter.

When an interpreter is first planned, LiteRT writes ``INFO: Created TensorFlow Lite XNNPACK
delegate for CPU.`` straight to the process's stderr (file descriptor 2), once per
interpreter, so once per scoring worker thread; no environment variable or API lowers it.
So stderr is caught around that call: LiteRT's ``INFO:`` lines are logged at DEBUG, and
anything else written there meanwhile goes back to stderr unchanged.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import threading
from typing import Iterator

from crackscan import verbosity

log = logging.getLogger("crackscan.native_stderr")
NATIVE_INFO = b"INFO: "
# File descriptor 2 belongs to the whole process: one thread at a time may swap it.
_SWAP = threading.Lock()


@contextlib.contextmanager
def native_info_to_debug() -> Iterator[None]:
    """Runs the block with file descriptor 2 caught, unless the run is verbose."""
    if verbosity.verbose_requested(()):
        yield
        return
    with _SWAP, tempfile.TemporaryFile() as caught:
        sys.stderr.flush()
        try:
            saved = os.dup(2)
        except OSError:  # no stderr to catch
            yield
            return
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            for line in caught.read().splitlines(keepends=True):
                if line.startswith(NATIVE_INFO):
                    log.debug("%s", line.decode("utf-8", "replace").rstrip())
                else:
                    os.write(2, line)
