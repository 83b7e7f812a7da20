"""The docs a newcomer reads work as written: every command shown parses with the command's
own parser, every relative link and anchor resolves, no path of one machine appears, and
CI runs exactly the README's test command."""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Callable, Iterator

import pytest

from crackscan import cli, model_card_doc
from pipeline import demo as score_demo
from pipeline import score
from training import (build_dataset, export_tflite, jointed_set, mask_export, mask_stats,
                      train, train_masks)
from training import demo as train_demo

REPO = Path(__file__).resolve().parents[1]
DOCS = sorted([REPO / "README.md", REPO / "MODEL_CARD.md", REPO / "CHANGELOG.md",
               REPO / "bench" / "README.md", *(REPO / "docs").glob("*.md")])
# The changelog names flags as they were: only its links and paths are checked.
CURRENT_DOCS = [document for document in DOCS if document.name != "CHANGELOG.md"]
# Each command as a console script and as ``python -m``: its parser, and whether Beam's
# pipeline options may follow its own flags.
PARSERS: dict[str, tuple[Callable[[], argparse.ArgumentParser], bool]] = {
    "crackscan-score": (score.build_parser, True),
    "crackscan-demo": (score_demo.parser, False),
    "crackscan-build-dataset": (build_dataset.parser, False),
    "crackscan-train": (train.parser, False),
    "crackscan-export-tflite": (export_tflite.parser, False),
    "crackscan-train-demo": (train_demo.parser, False),
}
# Commands run only as ``python -m``.
MODULE_PARSERS = {"crackscan.model_card_doc": (model_card_doc.parser, False),
                  "training.jointed_set": (jointed_set.parser, False),
                  "training.mask_stats": (mask_stats.parser, False),
                  "training.train_masks": (train_masks.parser, False),
                  "training.mask_export": (mask_export.parser, False)}
MODULES = {"pipeline.score": "crackscan-score", "pipeline.demo": "crackscan-demo",
           "training.build_dataset": "crackscan-build-dataset", "training.train": "crackscan-train",
           "training.export_tflite": "crackscan-export-tflite",
           "training.demo": "crackscan-train-demo"}
# The page that documents each command's flags, each flag once.
FLAG_PAGES = {"crackscan-score": "docs/scoring.md", "crackscan-demo": "docs/scoring.md",
              "crackscan-build-dataset": "docs/training.md", "crackscan-train": "docs/training.md",
              "crackscan-export-tflite": "docs/training.md",
              "crackscan-train-demo": "docs/training.md"}
COMMON_FLAGS = {"-h", "--help", "--version", "--verbose"}
SEPARATORS = {"&&", "||", ";", "|"}
FENCE = re.compile(r"^```(?:bash|sh)\n(.*?)^```", re.DOTALL | re.MULTILINE)
INLINE = re.compile(r"(?<!`)`(crackscan-[a-z-]+(?: [^`]*)?)`")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
MACHINE_PATH = re.compile(r"(?<![\w.~$-])/(?:work|home|tmp|root|Users|mnt|private/var)/")


def shell_commands(text: str) -> Iterator[list[str]]:
    """Every simple command of the markdown's bash blocks, continuation lines joined,
    comments and leading VAR=value assignments dropped."""
    for block in FENCE.findall(text):
        for line in block.replace("\\\n", " ").splitlines():
            words: list[str] = []
            for word in [*shlex.split(line, comments=True), ";"]:
                if word in SEPARATORS:
                    while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
                        words.pop(0)
                    if words:
                        yield words
                    words = []
                else:
                    words.append(word)


def crackscan_command(words: list[str]) -> tuple[str, list[str]] | None:
    """The command's name and arguments when it runs one of ours, else None."""
    program = Path(words[0]).name
    if program in PARSERS:
        return program, words[1:]
    if program.startswith("python") and words[1:2] == ["-m"]:
        if words[2] in MODULES:
            return MODULES[words[2]], words[3:]
        if words[2] in MODULE_PARSERS:
            return words[2], words[3:]
    return None


def parse_problem(program: str, arguments: list[str]) -> str | None:
    """What the command's own parser says is wrong with ``arguments``, or None."""
    parsers = {**PARSERS, **MODULE_PARSERS}
    if program not in parsers:
        return f"{program}: no such command (setup.py's console_scripts)"
    make_parser, takes_beam_options = parsers[program]
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(io.StringIO()):
            if takes_beam_options:
                cli.parse_with_beam_options(make_parser(), arguments)
            else:
                cli.parse_args(make_parser(), arguments)
    except SystemExit as exit_:
        if exit_.code:
            return f"{program} {shlex.join(arguments)}: {errors.getvalue().strip()}"
    return None


def flag_problems(program: str, arguments: list[str]) -> list[str]:
    """A command shown in prose may leave out required flags; the flags it names must be
    the command's (or, for the Beam job, Beam's)."""
    if program not in PARSERS:
        return [f"{program}: no such command (setup.py's console_scripts)"]
    make_parser, takes_beam_options = PARSERS[program]
    parser = make_parser()
    known = set(cli.option_strings(parser))
    if takes_beam_options:
        known |= set(cli.option_strings(cli.beam_option_parser(parser.prog)))
    return [f"{program}: {word} is not one of its flags" for word in arguments
            if word.startswith("--") and word.split("=", 1)[0] not in known]


def command_problems(text: str) -> list[str]:
    problems = []
    for words in shell_commands(text):
        command = crackscan_command(words)
        if command:
            problem = parse_problem(*command)
            problems += [problem] if problem else []
    for span in INLINE.findall(text):
        words = span.replace("|", " ").split()
        problems += flag_problems(words[0], words[1:])
    return problems


def undocumented_flags(program: str, page: str) -> list[str]:
    """The command's flags that its page never shows in backticks."""
    return [flag for flag in cli.option_strings(PARSERS[program][0]())
            if flag not in COMMON_FLAGS and f"`{flag}" not in page]


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def broken_links(document: Path, text: str) -> list[str]:
    broken = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        linked = (document.parent / path).resolve() if path else document
        if not linked.exists():
            broken.append(f"{document.name}: {target}: no such file")
        elif anchor and linked.suffix == ".md":
            headings = re.findall(r"^#+ (.+)$", linked.read_text(encoding="utf-8"), re.M)
            if anchor not in {github_anchor(heading) for heading in headings}:
                broken.append(f"{document.name}: {target}: no such heading")
    return broken


@pytest.mark.parametrize("document", CURRENT_DOCS,
                         ids=lambda path: str(path.relative_to(REPO)))
def test_every_command_shown_parses(document: Path):
    assert command_problems(document.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize("program", FLAG_PAGES)
def test_every_flag_is_documented_on_its_page(program: str):
    page = (REPO / FLAG_PAGES[program]).read_text(encoding="utf-8")
    assert undocumented_flags(program, page) == []


@pytest.mark.parametrize("document", DOCS, ids=lambda path: str(path.relative_to(REPO)))
def test_every_relative_link_resolves(document: Path):
    assert broken_links(document, document.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize("document", DOCS, ids=lambda path: str(path.relative_to(REPO)))
def test_no_machine_specific_path(document: Path):
    text = document.read_text(encoding="utf-8")
    assert [line for line in text.splitlines() if MACHINE_PATH.search(line)] == []


def test_every_command_shown_is_a_console_script():
    scripts = set(re.findall(r'"(crackscan-[a-z-]+)=', (REPO / "setup.py").read_text()))
    assert scripts == set(PARSERS)
    shown = {match for document in DOCS
             for match in re.findall(r"\bcrackscan-[a-z0-9]+(?:-[a-z0-9]+)*", document.read_text())}
    assert shown <= scripts | {"crackscan-mobilenet-v2"}, shown - scripts


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    test_command = next(line for block in FENCE.findall(readme) for line in block.splitlines()
                        if line.endswith("-m pytest"))
    ci = (REPO / ".ci" / "run").read_text().strip().splitlines()
    assert ci[-1] == test_command


def test_the_readme_is_short_and_links_every_page():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 250
    for page in (REPO / "docs").glob("*.md"):
        assert f"(docs/{page.name})" in readme, page.name
    assert "(MODEL_CARD.md)" in readme and "(CHANGELOG.md)" in readme


def runnable_score_commands() -> list[list[str]]:
    """The scoring commands shown whose every input exists in a checkout."""
    runnable = []
    for document in CURRENT_DOCS:
        for words in shell_commands(document.read_text(encoding="utf-8")):
            command = crackscan_command(words)
            if command and command[0] == "crackscan-score":
                arguments = command[1]
                inputs = [arguments[i + 1] for i, word in enumerate(arguments) if word == "--input"]
                if inputs and all((REPO / pattern).exists() for pattern in inputs):
                    runnable.append(arguments)
    return runnable


def test_the_shown_score_commands_with_inputs_run_their_dry_run(tmp_path: Path):
    """Each as written, but for its output folder and with --dry-run."""
    commands = runnable_score_commands()
    assert commands, "no scoring command of the docs has inputs in the checkout"
    for number, arguments in enumerate(commands):
        arguments = list(arguments)
        arguments[arguments.index("--output") + 1] = str(tmp_path / str(number))
        result = subprocess.run(
            [sys.executable, "-m", "pipeline.score", *arguments,
             *([] if "--dry-run" in arguments else ["--dry-run"])],
            cwd=REPO, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        job = json.loads(result.stdout)
        assert job["submitted"] is False and job["inputs"] == [
            arguments[i + 1] for i, word in enumerate(arguments) if word == "--input"]


def test_the_checks_catch_a_drifted_command_a_broken_link_and_a_local_path():
    page = (REPO / "docs" / "scoring.md").read_text(encoding="utf-8")
    assert command_problems(page) == []
    drifted = page.replace("--write-tiles", "--write-tile", 1)
    assert any("--write-tile" in problem for problem in command_problems(drifted))
    prose = "Run `crackscan-score --skip_scored OUT` again."
    assert flag_problems("crackscan-score", ["--skip_scored", "OUT"]) != []
    assert command_problems(prose) != []
    renamed = "```bash\ncrackscan-train --data d --output m --mirror-average\n```\n"
    assert any("--mirror-average" in problem for problem in command_problems(renamed))
    training = (REPO / "docs" / "training.md").read_text(encoding="utf-8")
    assert undocumented_flags("crackscan-build-dataset",
                              training.replace("`--clear-crops", "`clear-crops")) == [
        "--clear-crops"]
    document = REPO / "docs" / "scoring.md"
    assert broken_links(document, "[x](deployment.md#nightly-schedule)") == []
    assert broken_links(document, "[x](deployment.md#nightly-schedules)") != []
    assert broken_links(document, "[x](deploy.md)") != []
    assert MACHINE_PATH.search("scored /home/alice/photos") and not MACHINE_PATH.search(
        "gs://bucket/tmp/x and ~/data/x")
