"""The README's training demo, shrunk: generate, build, train, score, all offline."""
from __future__ import annotations

import csv
import json
from pathlib import Path

from training import demo


def test_demo_runs_end_to_end_offline(tmp_path: Path):
    output = tmp_path / "demo"
    result = demo.main(["--output", str(output), "--per-class", "40", "--image-size", "64",
                        "--epochs", "2", "--photos", "2"])
    scores = output / "scores"
    summary = json.loads((scores / "summary.json").read_text())
    assert summary["seen"] == 3 == summary["scored"] + summary["failed"]
    assert summary["failed"] == 1
    errors = [json.loads(line) for path in scores.glob("errors-*.jsonl")
              for line in path.read_text().splitlines()]
    assert [e["uri"].rsplit("/", 1)[-1] for e in errors] == ["DJI_BROKEN.JPG"]
    rows = [row for path in scores.glob("predictions-*.csv")
            for row in csv.DictReader(path.open())]
    assert sorted(r["uri"].rsplit("/", 1)[-1] for r in rows) == ["DJI_0001.JPG", "DJI_0002.JPG"]
    assert all(int(r["tiles"]) > 1 for r in rows)
    assert (scores / "report.html").stat().st_size > 1000
    assert (output / "model" / "model_card.json").exists()
    assert result["training"]["test"]["counts"]["total"] > 0
