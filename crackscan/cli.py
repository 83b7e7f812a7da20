"""Strict command lines: every argument is understood, or the command stops before any work.

argparse's ``parse_known_args`` and Beam's ``PipelineOptions`` both set aside what they do
not know, and Beam then drops it with a log line. A mistyped flag (``--skip_scored``, in
the underscore style of Beam's own options) was therefore ignored and the run went ahead
doing something else than asked: the whole survey scored again, BigQuery skipped. Here an
argument is accepted only when the command's parser or Beam's options parser consumes it;
anything else exits with status 2 and the nearest valid flag. Beam's options themselves
are passed on exactly as given.

Usage in a command's ``main``::

    args = cli.parse_args(parser, argv)                        # no pipeline options
    args, beam_args = cli.parse_with_beam_options(parser, argv)  # a Beam job
    with cli.one_line_errors("training.train", DataError, OSError):
        ...  # an expected failure prints "training.train: error: <message>", exit status 1
"""
from __future__ import annotations

import argparse
import contextlib
import difflib
import importlib.metadata
import os
import shlex
import sys
from typing import Any, Callable, Iterator, Sequence

from apache_beam.options.pipeline_options import PipelineOptions, _BeamArgumentParser

from crackscan import verbosity


def version() -> str:
    try:
        return importlib.metadata.version("crackscan")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed: pip install -e .)"


def program_name(module: str) -> str:
    """The command as it was invoked, for usage lines and help: the console script's name
    (``crackscan-score``), or ``python -m MODULE`` when run as a module."""
    invoked = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    if not invoked or invoked.endswith(".py") or invoked in ("-c", "-m"):
        return f"python -m {module}"
    return invoked


def command_parser(module: str, description: str, **kwargs) -> argparse.ArgumentParser:
    """A command's parser: named as invoked, no abbreviations (a prefix of one flag must not
    be taken for it), defaults shown in help, ``--version`` and ``--verbose``."""
    parser = argparse.ArgumentParser(prog=program_name(module), description=description,
                                     allow_abbrev=False, **kwargs)
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    parser.add_argument(verbosity.VERBOSE_FLAG, action="store_true",
                        help="also show the log lines of Beam, TensorFlow and LiteRT, from "
                             "DEBUG up (default: this command's own lines and errors)")
    return parser


def option_strings(parser: argparse.ArgumentParser) -> list[str]:
    """Every flag ``parser`` accepts, in the order they were added."""
    return [option for action in parser._actions for option in action.option_strings]


def beam_option_parser(prog: str) -> argparse.ArgumentParser:
    """The parser ``PipelineOptions`` builds to read its flags: every option class Beam
    knows in this process, no abbreviations. Its usage line names the command instead of
    listing Beam's hundreds of options, for the message of a malformed Beam option."""
    parser = _BeamArgumentParser(prog=prog, allow_abbrev=False,
                                 usage=f"{prog} [options] [Beam pipeline options]")
    classes: dict[str, type[PipelineOptions]] = {}
    for options_class in PipelineOptions.__subclasses__():
        classes.setdefault(str(options_class), options_class)  # as Beam de-duplicates them
    for options_class in classes.values():
        options_class._add_argparse_args(parser)
    return parser


def _normalised(flag: str) -> str:
    return flag.lstrip("-").replace("_", "-").lower()


def nearest_flag(argument: str, ours: Sequence[str], beams: Sequence[str] = ()) -> str | None:
    """The valid flag ``argument`` most likely meant: the same words in the other style
    (``--skip_scored`` for ``--skip-scored``) first, then the closest spelling, the
    command's own flags before Beam's."""
    name = argument.split("=", 1)[0]
    for candidates in (ours, beams):
        for flag in candidates:
            if _normalised(flag) == _normalised(name):
                return flag
    for candidates in (ours, [*ours, *beams]):
        close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.75)
        if close:
            return close[0]
    return None


def _refuse(parser: argparse.ArgumentParser, unknown: Sequence[str], ours: Sequence[str],
            beams: Sequence[str] = ()) -> None:
    """Exits with status 2 and parser's usage, naming every argument nobody understood."""
    hints = []
    for argument in unknown:
        if argument.startswith("-"):
            flag = nearest_flag(argument, ours, beams)
            hints.append(f"did you mean {flag}?" if flag
                         else f"{argument.split('=', 1)[0]} is not an option of this command")
    if not hints:
        hints.append("every value must follow the flag it belongs to")
    parser.error(f"unrecognized arguments: {shlex.join(unknown)}; " + "; ".join(hints))


def parse_args(parser: argparse.ArgumentParser,
               argv: Sequence[str] | None = None) -> argparse.Namespace:
    """``parser.parse_args``, but an unknown argument's message names the nearest flag."""
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        _refuse(parser, unknown, option_strings(parser))
    return args


def parse_with_beam_options(parser: argparse.ArgumentParser,
                            argv: Sequence[str] | None = None
                            ) -> tuple[argparse.Namespace, list[str]]:
    """The command's arguments, and the rest, untouched, when Beam's options parser takes
    every one of them (``--runner DataflowRunner``, ``--direct_num_workers=2``, ...).
    Exits with status 2 otherwise, before anything is read or built."""
    args, rest = parser.parse_known_args(argv)
    beam_parser = beam_option_parser(parser.prog)
    _, unknown = beam_parser.parse_known_args(rest)
    if unknown:
        _refuse(parser, unknown, option_strings(parser), option_strings(beam_parser))
    return args, rest


@contextlib.contextmanager
def one_line_errors(prog: str, *expected: type[Exception]) -> Iterator[None]:
    """Turns the ``expected`` failures of a command (a missing file, a bad input) into one
    line, ``PROG: error: MESSAGE`` on stderr, and exit status 1, instead of a traceback.
    The messages must name the file and the reason; anything unexpected still raises."""
    try:
        yield
    except expected as exc:
        sys.exit(f"{prog}: error: {exc}")


def console_script(main: Callable[[], Any]) -> Callable[[], None]:
    """``main`` as a console script whose exit status is 0 on success: the script generated
    by pip passes what its function returns to ``sys.exit``, which prints a returned report
    and exits with status 1."""
    def script() -> None:
        main()
    script.__doc__ = main.__doc__
    return script
