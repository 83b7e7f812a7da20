"""MODEL_CARD.md and the README state the shipped model's figures as its model_card.json
has them: each figure table is written from the card, and a table that drifts is caught."""
from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from crackscan import model_card_doc

REPO = Path(__file__).resolve().parents[1]
CARD = json.loads(model_card_doc.SHIPPED_CARD.read_text(encoding="utf-8"))
MODEL_CARD_TABLES = ["model", "training-data", "test-by-source", "photos-by-source",
                     "val-by-source", "photo-size", "reproduce", "masks"]


def test_the_model_card_holds_every_table_and_the_readme_the_headline():
    assert model_card_doc.tables((REPO / "MODEL_CARD.md").read_text()) == MODEL_CARD_TABLES
    assert model_card_doc.tables((REPO / "README.md").read_text()) == ["headline"]


def test_committed_tables_equal_the_shipped_card():
    for document in model_card_doc.DOCUMENTS:
        assert model_card_doc.stale_tables(document.read_text(encoding="utf-8"), CARD) == [], (
            f"{document.name}: run python -m crackscan.model_card_doc")


def test_a_figure_changed_in_the_text_or_in_the_card_is_caught():
    text = (REPO / "MODEL_CARD.md").read_text(encoding="utf-8")
    uavcrack = CARD["metrics_by_source"]["test"]["uavcrack"]
    shown = f"| uavcrack | 317 (247 / 70) | {100 * uavcrack['accuracy']:.1f}% |"
    assert shown in text
    edited = text.replace(shown, shown.replace(f"{100 * uavcrack['accuracy']:.1f}%", "93.0%"))
    assert model_card_doc.stale_tables(edited, CARD) == ["test-by-source"]

    retrained = copy.deepcopy(CARD)
    retrained["metrics_by_source"]["test"]["uavcrack"]["accuracy"] = 0.93
    retrained["photo_rule"]["test"]["recall"] = 0.95
    assert model_card_doc.stale_tables(text, retrained) == ["test-by-source",
                                                             "photos-by-source"]
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert model_card_doc.stale_tables(readme, retrained) == ["headline"]


def test_the_regenerate_command_rewrites_the_tables_and_keeps_the_prose(tmp_path: Path):
    document = tmp_path / "MODEL_CARD.md"
    shutil.copy(REPO / "MODEL_CARD.md", document)
    retrained = copy.deepcopy(CARD)
    retrained["threshold"] = 0.4
    retrained["metrics_by_source"]["test"]["wallseg"]["recall"] = 0.5
    card = tmp_path / "model_card.json"
    card.write_text(json.dumps(retrained), encoding="utf-8")

    def run(*arguments: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "crackscan.model_card_doc", *arguments],
                              cwd=REPO, capture_output=True, text=True, timeout=120)

    check = run("--check", "--card", str(card), str(document))
    assert check.returncode == 1
    assert check.stdout.splitlines() == ["MODEL_CARD.md: model: differs from the card",
                                         "MODEL_CARD.md: test-by-source: differs from the card"]
    assert run("--card", str(card), str(document)).returncode == 0
    assert run("--check", "--card", str(card), str(document)).returncode == 0
    rewritten = document.read_text(encoding="utf-8")
    assert "| threshold (crack probability of a tile) | 0.400 |" in rewritten
    assert "| wallseg | 845 (729 / 116) | 97.6% | 50.0% |" in rewritten
    original = (REPO / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert model_card_doc.BLOCK.sub("", rewritten) == model_card_doc.BLOCK.sub("", original)
    assert run("--check", str(document)).returncode == 1


def test_an_unknown_table_is_refused():
    text = "<!-- card:figures -->\n<!-- /card:figures -->\n"
    with pytest.raises(model_card_doc.DocError, match="card:figures"):
        model_card_doc.render(text, CARD)


def test_the_failure_modes_say_they_were_measured_on_the_shipped_model():
    """Those figures are not in the card: the prose names the model it measured, and a new
    model fails this until they are measured again or said to be another model's."""
    prose = model_card_doc.BLOCK.sub("", (REPO / "MODEL_CARD.md").read_text(encoding="utf-8"))
    measured_on = re.findall(r"Measured on this model \(version `([0-9a-f]{12})`\)", prose)
    assert measured_on == [CARD["model_sha256"][:12]]
