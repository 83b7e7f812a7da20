"""Accounting against what was written: the summary counts the rows in the files, and a run
whose files lack a row, or hold a uri twice, fails with the counts in its message.

The faulty steps injected here are real Beam transforms put where the product's own steps
are (a sink that loses rows, as Beam's DaskRunner 2.77 did; a reader that reports an input
twice), so the check is exercised exactly as a faulty runner or sink would exercise it.
"""
from __future__ import annotations

import gc
import io
import json
import re
import tarfile
from pathlib import Path

import apache_beam as beam
import pytest

from bench.archive_scale import corrupt_count, members, write_archives
from crackscan.sources import read_items
from pipeline import score as score_module
from pipeline.reading import ERRORS, ReadInputs
from pipeline.score import run
from pipeline.sinks import WriteJsonLines, WritePredictions
from pipeline.summary import ERRORS_SHOWN_PER_STAGE
from scoring_helpers import IN_MEMORY, concrete, copy_files, read_jsonl, read_predictions, score

MEMBERS = 1500  # per archive: 3,000 inputs in one run, a tenth of them corrupt
CORRUPT_EVERY = 10


@pytest.fixture
def small_survey(tmp_path: Path, real_data: Path) -> Path:
    """Ten real photos (half in ``Negative/``), two files that are not photos (decode
    errors) and a dangling link (a read error)."""
    folder = tmp_path / "survey"
    copy_files(concrete(real_data, "Positive", 5), folder)
    copy_files(concrete(real_data, "Negative", 5), folder / "Negative")
    (folder / "notes.jpg").write_text("battery swapped at 14:02\n")
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "gone.jpg").symlink_to("deleted.jpg")
    return folder


def test_a_clean_run_records_the_rows_in_its_files(small_survey: Path, tiny_model_dir: Path,
                                                   tmp_path: Path):
    out = tmp_path / "out"
    summary = score("--input", small_survey, "--model", tiny_model_dir, "--output", out,
                    "--write-tiles")
    assert summary["accounting_ok"] is True
    assert summary["accounting"] == {
        "in_pipeline": {"seen": 13, "scored": 10, "failed": 3, "tiles": 10},
        "in_files": {"predictions": 10, "errors": 3, "tiles": 10},
        "duplicate_uris": 0, "problems": []}
    assert len(read_predictions(out)) == 10 and len(read_jsonl(out, "errors")) == 3


class LosingWritePredictions(WritePredictions):
    """The real predictions sink behind a step that loses the rows of negative photos."""

    def expand(self, rows: beam.PCollection) -> beam.PCollection:
        kept = rows | "LoseRows" >> beam.Filter(lambda row: "/Negative/" not in row["uri"])
        return super().expand(kept)


class LosingWriteJsonLines(WriteJsonLines):
    """The real JSON lines sink behind a step that loses the row of the empty file."""

    def expand(self, rows: beam.PCollection) -> beam.PCollection:
        kept = rows | "LoseRows" >> beam.Filter(lambda row: not row["uri"].endswith("empty.jpg"))
        return super().expand(kept)


@pytest.mark.parametrize("sink, replacement, lost", [
    ("WritePredictions", LosingWritePredictions,
     "the predictions files hold 5 rows for 10 scored"),
    ("WriteJsonLines", LosingWriteJsonLines, "the errors files hold 2 rows for 3 failed"),
])
def test_a_sink_that_loses_rows_fails_the_run_with_the_counts(
        small_survey: Path, tiny_model_dir: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, sink: str, replacement: type, lost: str):
    monkeypatch.setattr(score_module, sink, replacement)
    out = tmp_path / "out"
    with pytest.raises(Exception, match=re.escape(lost)):
        run(["--input", str(small_survey), "--model", str(tiny_model_dir), "--output",
             str(out), IN_MEMORY])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["accounting_ok"] is False
    assert summary["accounting"]["in_pipeline"]["seen"] == 13
    assert summary["accounting"]["problems"] == [lost]
    assert "Accounting mismatch" in (out / "report.html").read_text()


class ReadingTwice(ReadInputs):
    """The real reader, reporting each unreadable input twice: every count still adds up
    (each copy is seen once and failed once), only the uris show it."""

    def expand(self, pbegin: beam.pvalue.PBegin) -> dict[str, beam.PCollection]:
        outputs = super().expand(pbegin)
        twice = (outputs[ERRORS], outputs[ERRORS] | "Again" >> beam.Map(dict))
        return {**outputs, ERRORS: twice | "Twice" >> beam.Flatten()}


def test_a_uri_with_two_rows_fails_the_run(small_survey: Path, tiny_model_dir: Path,
                                           tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(score_module, "ReadInputs", ReadingTwice)
    out = tmp_path / "out"
    with pytest.raises(Exception, match="1 uris have more than one row"):
        run(["--input", str(small_survey), "--model", str(tiny_model_dir), "--output",
             str(out), IN_MEMORY])
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["seen"], summary["scored"], summary["failed"]) == (14, 10, 4)
    assert summary["accounting"]["in_files"] == {"predictions": 10, "errors": 4}
    assert summary["accounting"]["duplicate_uris"] == 1
    assert summary["accounting"]["problems"] == [
        f"1 uris have more than one row (e.g. '{small_survey}/gone.jpg')"]


def test_thousands_of_archive_members_are_accounted_for_exactly(
        tmp_path: Path, tiny_model_dir: Path):
    """A zip and a tar.gz of the same generated photos, a tenth of them corrupt, in one run
    (``bench/archive_scale.py`` runs the same at 50,000 members)."""
    archives = write_archives(tmp_path / "in", MEMBERS, CORRUPT_EVERY)
    out = tmp_path / "out"
    summary = score("--input", archives["zip"], "--input", archives["tar.gz"], "--model",
                    tiny_model_dir, "--output", out, "--batch-size", "64")

    names = [name for name, _ in members(MEMBERS, CORRUPT_EVERY)]
    corrupt = {name for index, name in enumerate(names) if index % CORRUPT_EVERY == 0}
    predictions, errors = read_predictions(out), read_jsonl(out, "errors")
    expected_scored = {f"{archive}!{name}" for archive in archives.values()
                       for name in names if name not in corrupt}
    expected_failed = {f"{archive}!{name}" for archive in archives.values()
                       for name in corrupt}
    assert set(predictions) == expected_scored
    assert sorted(row["uri"] for row in errors) == sorted(expected_failed)
    failed = 2 * corrupt_count(MEMBERS, CORRUPT_EVERY)
    assert (summary["seen"], summary["scored"], summary["failed"]) == (
        2 * MEMBERS, 2 * MEMBERS - failed, failed)
    assert summary["accounting"]["in_files"] == {"predictions": 2 * MEMBERS - failed,
                                                 "errors": failed}
    assert summary["accounting_ok"] is True
    # The report lists the first errors of each stage and counts them all.
    report = (out / "report.html").read_text()
    assert report.count('<td class="stage">') == ERRORS_SHOWN_PER_STAGE < failed
    assert f"Showing {ERRORS_SHOWN_PER_STAGE} of {failed} errors" in report


def tar_of(path: Path, count: int) -> Path:
    with tarfile.open(path, "w") as packed:
        for index in range(count):
            info = tarfile.TarInfo(f"m-{index:05d}.jpg")
            info.size = 4
            packed.addfile(info, io.BytesIO(b"data"))
    return path


def test_reading_a_tar_keeps_no_member_headers_behind(tmp_path: Path):
    archive = tar_of(tmp_path / "many.tar", 3000)
    alive = []
    for index, _ in enumerate(read_items(str(archive))):
        if index == 2999:  # the reader is still open on the last member
            gc.collect()
            alive.append(sum(isinstance(o, tarfile.TarInfo) for o in gc.get_objects()))
    assert alive and alive[0] <= 2
