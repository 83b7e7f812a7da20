"""Whether an output folder holds a finished run: one rule for the pipeline and the launchers.

``summary.json`` is a run's last write, after every sink has renamed its shards into place,
and is itself renamed into place. A run killed or failed before it may still have renamed
some shards: complete files, but not a complete run. So an output is

- **finished** when it has its summary: the nightly launcher keeps it (as the previous
  night's output, even when its accounting failed, for the post-mortem), and
- **reusable** (``--skip-scored``) when it is finished and its summary says the accounting
  added up; nothing of any other output is trusted.

``python -m pipeline.run_status rotate OUT PREVIOUS`` is the nightly launcher's question:
it moves a finished ``OUT`` to ``PREVIOUS`` (replacing an older copy), deletes an unfinished
one (so ``PREVIOUS`` keeps the last finished output), and prints ``PREVIOUS`` when it holds
an output to pass as ``--skip-scored``.
"""
from __future__ import annotations

import json
import os
import sys

from apache_beam.io.filesystems import FileSystems

from crackscan import cli
from crackscan.model_card import join

SUMMARY_FILE, REPORT_FILE = "summary.json", "report.html"


def _files(folder: str) -> list[str]:
    try:
        return [m.path for m in FileSystems.match([join(folder, "**")])[0].metadata_list]
    except Exception:  # Beam raises when nothing matches
        return []


def is_finished(out: str) -> bool:
    return FileSystems.exists(join(out, SUMMARY_FILE))


def unfinished_run_reason(out: str) -> str | None:
    """Why an earlier output must not be reused, or None when it may be (module doc)."""
    path = join(out, SUMMARY_FILE)
    if not is_finished(out):
        return f"{path} is missing: that run did not finish"
    try:
        with FileSystems.open(path) as handle:
            summary = json.loads(handle.read())
    except ValueError as exc:
        return f"{path} is not valid JSON: {exc}"
    if not isinstance(summary, dict) or summary.get("accounting_ok") is not True:
        return f"{path} does not record a run whose accounting added up"
    return None


def rotate(out: str, previous: str) -> str | None:
    """The nightly rotation (module doc); returns ``previous`` when it holds an output."""
    current = _files(out)
    if current and not is_finished(out):
        print(f"{out} holds an unfinished run (no {SUMMARY_FILE}): deleting its "
              f"{len(current)} files", file=sys.stderr)
        FileSystems.delete(current)
    elif current:
        stale = _files(previous)
        if stale:
            FileSystems.delete(stale)
        prefix = out.rstrip("/")
        targets = [previous.rstrip("/") + path[len(prefix):] for path in current]
        for target in targets:
            if FileSystems.get_scheme(target) is None:
                os.makedirs(os.path.dirname(target), exist_ok=True)
        FileSystems.rename(current, targets)
    return previous if _files(previous) else None


def main(argv: list[str] | None = None) -> None:
    parser = cli.command_parser("pipeline.run_status", __doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    rotating = commands.add_parser("rotate", help="the nightly launcher's rotation of OUT")
    rotating.add_argument("out", metavar="OUT", help="the night's output folder or prefix")
    rotating.add_argument("previous", metavar="PREVIOUS",
                          help="where the last finished output of that night is kept")
    args = cli.parse_args(parser, argv)
    with cli.one_line_errors(parser.prog, OSError):
        kept = rotate(args.out, args.previous)
    if kept:
        print(kept)


if __name__ == "__main__":
    main()
