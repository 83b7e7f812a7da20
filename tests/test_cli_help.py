"""Every command says what it does: each flag's help gives its default, --version answers,
and the usage line names the program as it was invoked."""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from crackscan import cli
from pipeline import score
from training import build_dataset, train

REPO = Path(__file__).resolve().parents[1]
PARSERS = {"pipeline.score": score.build_parser, "training.train": train.parser,
           "training.build_dataset": build_dataset.parser}


@pytest.mark.parametrize("module", PARSERS)
def test_every_optional_flag_states_its_default(module):
    undocumented = [action.option_strings for action in PARSERS[module]()._actions
                    if not action.required and action.option_strings
                    and not isinstance(action, (argparse._HelpAction, argparse._VersionAction,
                                                argparse._StoreTrueAction))
                    and "default" not in (action.help or "")]
    assert undocumented == []


@pytest.mark.parametrize("module", PARSERS)
def test_version_and_program_name_as_invoked(module):
    result = subprocess.run([sys.executable, "-m", module, "--version"], cwd=REPO, text=True,
                            capture_output=True, timeout=120)
    assert result.returncode == 0
    assert result.stdout.strip() == f"python -m {module} {cli.version()}"


def test_console_script_names_itself(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/usr/local/bin/crackscan-score", "--help"])
    assert score.build_parser().prog == "crackscan-score"
    monkeypatch.setattr(sys, "argv", ["/repo/pipeline/score.py"])
    assert score.build_parser().prog == "python -m pipeline.score"


def test_score_help_says_which_beam_options_may_follow():
    text = score.build_parser().format_help()
    assert "Beam pipeline options may follow" in text and "--direct_num_workers" in text
