"""What a crackscan command prints: its own progress, warnings and results, not the start-up
chatter of the libraries under it.

A new user reads Beam's worker warnings (``No semi_persistent_directory found``,
``Discarding unparseable args``) and TensorFlow's CPU-feature notes as something they did
wrong. So, at the default verbosity, a log line is shown only when our own code logged it
(or it is an error): lines from Beam, TensorFlow, Keras and the rest are kept at DEBUG and
shown with ``--verbose``. The DirectRunner's worker processes send their log lines to the
launcher, which logs them as Beam's own; those are judged by the code that logged them in
the worker, so our warnings from a worker (a photo's untrusted metadata) still show.

TensorFlow's C++ reads its log level once, as it is imported, before any command line is
parsed: importing this module (``training`` and ``pipeline`` do, first) sets it from
``--verbose`` in ``sys.argv``, unless the environment already chose one.
"""
from __future__ import annotations

import codecs
import logging
import os
import re
import sys
from pathlib import Path
from typing import Sequence

VERBOSE_FLAG = "--verbose"
# Set for the worker processes a run starts, which inherit the environment, not the flags.
VERBOSE_ENV = "CRACKSCAN_VERBOSE"
# C++ INFO and WARNING lines of TensorFlow (and absl's note before them) are not printed.
TENSORFLOW_QUIET = {"TF_CPP_MIN_LOG_LEVEL": "2"}
OWN_PACKAGES = ("crackscan", "pipeline", "training", "bench")
OWN_DIRS = tuple(str(Path(__file__).resolve().parents[1] / name) + os.sep
                 for name in OWN_PACKAGES)
FORMAT = "%(levelname)s %(message)s"
# A worker's log entry as Beam's job service logs it: the entry's text form, one line.
RELAYED = re.compile(r'message: "(?P<message>(?:[^"\\]|\\.)*)".*?'
                     r'log_location: "(?P<location>[^"]*?)(?::\d+)?"')


def verbose_requested(argv: Sequence[str] | None = None) -> bool:
    """``--verbose`` among the command's arguments (``sys.argv`` when None), or set by the
    run that started this process."""
    arguments = sys.argv[1:] if argv is None else argv
    return VERBOSE_FLAG in arguments or os.environ.get(VERBOSE_ENV) == "1"


def _own_code(path: str) -> bool:
    return os.path.abspath(path).startswith(OWN_DIRS)


def _relayed(record: logging.LogRecord) -> tuple[str, str] | None:
    """The message and the logging file of a worker's line that Beam's job service logged
    in this process, or None for a line logged here."""
    if not (record.name.startswith("apache_beam") and record.msg == "Worker: %s"):
        return None
    match = RELAYED.search(record.getMessage())
    if not match:
        return None
    message = codecs.escape_decode(match["message"].encode())[0].decode("utf-8", "replace")
    return message, match["location"]


class OwnLinesOnly(logging.Filter):
    """Passes errors and the lines our own code logged, here or in a worker; a worker's
    line is rewritten as its message alone."""

    def filter(self, record: logging.LogRecord) -> bool:
        relayed = _relayed(record)
        if relayed:
            record.msg, record.args = relayed[0], ()
            return _own_code(relayed[1]) or record.levelno >= logging.ERROR
        return _own_code(record.pathname) or record.levelno >= logging.ERROR


class ConsoleHandler(logging.StreamHandler):
    """The console's handler (stderr), a class of its own so that a second ``configure``
    finds it instead of adding another."""


def configure(argv: Sequence[str] | None = None, level: int = logging.INFO) -> None:
    """Sets up the console for a command: our lines from ``level`` up, or with
    ``--verbose`` every line of every library from DEBUG up.

    Handlers already on the root logger (pytest's, a caller's) are left as they are, and a
    second call only changes the level: commands call each other (the demo runs a score).
    """
    verbose = verbose_requested(argv)
    if verbose:
        os.environ[VERBOSE_ENV] = "1"
    root = logging.getLogger()
    handler = next((h for h in root.handlers if isinstance(h, ConsoleHandler)), None)
    if handler is None:
        handler = ConsoleHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(FORMAT))
        root.addHandler(handler)
    handler.filters = [] if verbose else [OwnLinesOnly()]
    root.setLevel(logging.DEBUG if verbose else level)
    # Libraries' Python warnings (Keras' UserWarnings) become log lines, judged as above.
    logging.captureWarnings(True)
    # TensorFlow's Python logger prints through a handler of its own, beside the root's.
    for library in ("tensorflow", "absl"):
        for own_handler in logging.getLogger(library).handlers:
            own_handler.filters = [] if verbose else [OwnLinesOnly()]


def _quiet_native_start_up() -> None:
    if not verbose_requested():
        for name, value in TENSORFLOW_QUIET.items():
            os.environ.setdefault(name, value)


_quiet_native_start_up()
