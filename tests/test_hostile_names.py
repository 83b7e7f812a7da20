"""Hostile names and kinds of file: whatever an input is called and whatever it is, it ends
as exactly one row whose uri is unique, one line of UTF-8, and leads back to that input.

One corpus holds every class at once, built from real shared photos: names that are not
UTF-8, hold newlines, carriage returns, line separators, ``%`` or the ``!`` of archive
uris; a plain file whose name spells an archive member's uri beside that archive; zip and
tar members with empty and repeated names; a FIFO named like a photo and like an archive;
link loops, dangling links, links to a folder, and a link out of the input folder to a
file that must not be read. It is scored by the command line (exit status 0 and exact
accounting), then scored again with ``--skip-scored`` over that output, in JSON lines.
"""
from __future__ import annotations

import collections
import csv
import dataclasses
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import uuid
from pathlib import Path

import pytest

from crackscan import sources
from pipeline.bigquery_sink import error_columns, prediction_columns
from scoring_helpers import (concrete, read_jsonl, read_predictions, score, zip_archive,
                             zip_member)

REPO = Path(__file__).resolve().parents[1]
LATIN1 = os.fsdecode(b"caf\xe9.jpg")  # the bytes of a latin-1 name, as Python gives them
UNSAFE_IN_URIS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


@dataclasses.dataclass
class Corpus:
    root: Path
    scored: set[str]  # uris that must be scored
    failed: dict[str, str]  # uri -> what its error must say
    secret: str  # in the file a link leads to from outside: must appear in no output


def tar_bytes(members: list[tuple[str, bytes]]) -> bytes:
    """A GNU tar whose member names keep their bytes as given (surrogates included)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT,
                      encoding="utf-8", errors="surrogateescape") as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def build_corpus(base: Path, real_data: Path) -> Corpus:
    root = base / "inputs"
    (root / "sub").mkdir(parents=True)
    photos = [path.read_bytes() for path in concrete(real_data, "Positive", 8)
              + concrete(real_data, "Negative", 8)]
    scored: set[str] = set()
    failed: dict[str, str] = {}

    def put(name: str, data: bytes, uri_name: str) -> None:
        (root / name).write_bytes(data)
        scored.add(f"{root}/{uri_name}")

    put("good.jpg", photos[0], "good.jpg")
    put("sub/deep.jpg", photos[1], "sub/deep.jpg")
    put(LATIN1, photos[2], "caf%E9.jpg")
    put("caf%E9.jpg", photos[3], "caf%25E9.jpg")  # spells the escaped form of the one above
    put("100%.jpg", photos[4], "100%25.jpg")
    put("new\nline.jpg", photos[5], "new%0Aline.jpg")
    put("carriage\rreturn.jpg", photos[6], "carriage%0Dreturn.jpg")
    put("line\u2028separator, \"quoted\".jpg", photos[7],
        "line%E2%80%A8separator, \"quoted\".jpg")

    # An archive and a plain file whose name is that archive's member uri.
    (root / "pack.zip").write_bytes(zip_archive([zip_member("m.jpg", photos[8])]))
    put("pack.zip!m.jpg", photos[9], "pack.zip%21m.jpg")
    scored.add(f"{root}/pack.zip!m.jpg")

    # A member without a name between good ones, and names repeated.
    (root / "empty-name.zip").write_bytes(zip_archive(
        [zip_member("first.jpg", photos[10]), zip_member("", photos[11]),
         zip_member("second.jpg", photos[12]), zip_member("third.jpg", photos[13])]))
    scored.update(f"{root}/empty-name.zip!{name}" for name in ("first.jpg", "second.jpg",
                                                               "third.jpg"))
    failed[f"{root}/empty-name.zip!"] = "empty name"
    (root / "repeats.zip").write_bytes(zip_archive(
        [zip_member("x.jpg", photos[14]), zip_member("x.jpg", photos[15]),
         zip_member("y.jpg", photos[0]), zip_member("x.jpg", photos[1])]))
    scored.update({f"{root}/repeats.zip!x.jpg", f"{root}/repeats.zip!y.jpg"})
    failed.update({f"{root}/repeats.zip!x.jpg!2": "duplicate archive member name",
                   f"{root}/repeats.zip!x.jpg!3": "duplicate archive member name"})
    (root / "names.tar").write_bytes(tar_bytes(
        [(LATIN1, photos[2]), ("tar\nnewline.jpg", photos[3]), ("dup.jpg", photos[4]),
         ("dup.jpg", photos[5]), ("ok.jpg", photos[6])]))
    scored.update(f"{root}/names.tar!{name}" for name in ("caf%E9.jpg", "tar%0Anewline.jpg",
                                                          "dup.jpg", "ok.jpg"))
    failed[f"{root}/names.tar!dup.jpg!2"] = "duplicate archive member name"

    # Not regular files, and links.
    for name in ("pipe.jpg", "pipe.zip"):
        os.mkfifo(root / name)
        failed[f"{root}/{name}"] = "FIFO"
    os.symlink("loop-b.jpg", root / "loop-a.jpg")
    os.symlink("loop-a.jpg", root / "loop-b.jpg")
    failed.update({f"{root}/loop-a.jpg": "symbolic link loop",
                   f"{root}/loop-b.jpg": "symbolic link loop"})
    os.symlink("missing.jpg", root / "dangling.jpg")
    failed[f"{root}/dangling.jpg"] = "dangling symbolic link"
    os.symlink("good.jpg", root / "inside-link.jpg")
    scored.add(f"{root}/inside-link.jpg")
    os.symlink("sub", root / "folder-link")
    failed[f"{root}/folder-link"] = "a symbolic link to a folder"
    secret = f"secret-{uuid.uuid4().hex}"
    (base / "elsewhere").mkdir()
    (base / "elsewhere" / "credentials.txt").write_text(f"password={secret}\n")
    os.symlink(base / "elsewhere" / "credentials.txt", root / "outside.jpg")
    failed[f"{root}/outside.jpg"] = "outside the input folders: not followed"
    return Corpus(root, scored, failed, secret)


@dataclasses.dataclass
class Runs:
    corpus: Corpus
    first: Path  # the command line's output, CSV
    second: Path  # the same inputs with --skip-scored first, JSON lines
    summary: dict
    again: dict


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, real_data: Path,
         tiny_model_dir: Path) -> Runs:
    base = tmp_path_factory.mktemp("hostile-names")
    corpus = build_corpus(base, real_data)
    first, second = base / "first", base / "second"
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.score", "--input", str(corpus.root), "--model",
         str(tiny_model_dir), "--output", str(first)],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    again = score("--input", corpus.root, "--model", tiny_model_dir, "--output", second,
                  "--skip-scored", first, "--format", "jsonl")
    return Runs(corpus, first, second, json.loads((first / "summary.json").read_text()),
                again)


def rows(out: Path) -> tuple[dict[str, dict], dict[str, dict]]:
    if list(out.glob("predictions-*.csv")):
        predictions = read_predictions(out)
    else:
        predictions = {row["uri"]: row for row in read_jsonl(out, "predictions")}
    return predictions, {row["uri"]: row for row in read_jsonl(out, "errors")}


def test_every_input_ends_as_exactly_one_row_and_the_run_exits_0(runs: Runs):
    corpus, summary = runs.corpus, runs.summary
    predictions, errors = rows(runs.first)
    landed = collections.Counter([*predictions, *(row["uri"] for row in
                                                  read_jsonl(runs.first, "errors"))])
    assert [uri for uri, count in landed.items() if count > 1] == []
    assert set(predictions) == corpus.scored
    assert set(errors) == set(corpus.failed)
    for uri, reason in corpus.failed.items():
        assert reason in errors[uri]["error"], errors[uri]
    expected = len(corpus.scored) + len(corpus.failed)
    assert (summary["seen"], summary["scored"], summary["failed"]) == (
        expected, len(corpus.scored), len(corpus.failed))
    assert summary["accounting"]["in_files"] == {"predictions": len(corpus.scored),
                                                 "errors": len(corpus.failed)}
    assert summary["accounting_ok"] is True


def test_names_that_are_not_utf8_are_escaped_and_lead_back_to_their_bytes(runs: Runs):
    predictions, _ = rows(runs.first)
    for uri in (f"{runs.corpus.root}/caf%E9.jpg", f"{runs.corpus.root}/names.tar!caf%E9.jpg"):
        data = sources.read_uri(uri)
        assert hashlib.sha256(data).hexdigest() == predictions[uri]["sha256"]
    path, member, _ = sources.split_uri(f"{runs.corpus.root}/names.tar!caf%E9.jpg")
    assert member == LATIN1 and os.fsencode(member) == b"caf\xe9.jpg"


def test_every_uri_is_one_line_of_utf8_that_leads_back_to_its_input(runs: Runs):
    predictions, errors = rows(runs.first)
    for uri, row in predictions.items():
        assert not UNSAFE_IN_URIS.search(uri), uri
        assert hashlib.sha256(sources.read_uri(uri)).hexdigest() == row["sha256"], uri
    for uri in errors:
        assert not UNSAFE_IN_URIS.search(uri), uri
        path, _, _ = sources.split_uri(uri)
        assert os.path.lexists(path), uri
    # The plain file and the archive member that once shared a uri are told apart.
    root = runs.corpus.root
    assert sources.split_uri(f"{root}/pack.zip%21m.jpg") == (f"{root}/pack.zip!m.jpg", None, 1)
    assert sources.split_uri(f"{root}/pack.zip!m.jpg") == (f"{root}/pack.zip", "m.jpg", 1)


def test_newlines_in_names_keep_one_csv_record_per_line(runs: Runs):
    # The command line's default runs a worker per core: a shard each, each with its header.
    shards = sorted(runs.first.glob("predictions-*.csv"))
    lines = records = 0
    for shard in shards:
        text = shard.read_text(encoding="utf-8")
        lines += len(text.split("\n")) - 1
        records += len(list(csv.reader(io.StringIO(text, newline=""))))
    assert lines == records == len(runs.corpus.scored) + len(shards)


def test_skip_scored_reads_that_output_back_and_jsonl_holds_the_same_uris(runs: Runs):
    first, _ = rows(runs.first)
    second, errors = rows(runs.second)
    assert runs.again["reused"] == runs.again["scored"] == len(first)
    assert runs.again["accounting_ok"] is True
    assert {uri: row["sha256"] for uri, row in second.items()} == {
        uri: row["sha256"] for uri, row in first.items()}
    assert set(errors) == set(runs.corpus.failed)


def test_rows_are_what_the_bigquery_sink_takes(runs: Runs):
    predictions, errors = rows(runs.second)
    for row in predictions.values():
        json.dumps(prediction_columns(row), ensure_ascii=False).encode("utf-8")
    for row in errors.values():
        json.dumps(error_columns(row), ensure_ascii=False).encode("utf-8")


def test_an_empty_member_name_does_not_end_its_archive(runs: Runs):
    predictions, errors = rows(runs.first)
    root = runs.corpus.root
    assert {f"{root}/empty-name.zip!second.jpg", f"{root}/empty-name.zip!third.jpg"} <= set(
        predictions)
    assert "empty name" in errors[f"{root}/empty-name.zip!"]["error"]


def test_repeated_member_names_each_get_a_uri_of_their_own(runs: Runs):
    predictions, errors = rows(runs.first)
    root = runs.corpus.root
    assert f"{root}/repeats.zip!x.jpg" in predictions
    assert f"{root}/repeats.zip!x.jpg" not in errors
    assert "occurrence 3 of 'x.jpg'" in errors[f"{root}/repeats.zip!x.jpg!3"]["error"]


def test_fifos_links_loops_and_dangling_links_are_error_rows(runs: Runs):
    _, errors = rows(runs.first)
    root = runs.corpus.root
    assert errors[f"{root}/pipe.jpg"]["stage"] == "read"
    assert "not a regular file: a FIFO" in errors[f"{root}/pipe.zip"]["error"]
    assert "'missing.jpg' does not exist" in errors[f"{root}/dangling.jpg"]["error"]


def test_a_link_out_of_the_input_folder_is_not_followed(runs: Runs):
    secret = runs.corpus.secret
    for out in (runs.first, runs.second):
        for path in out.iterdir():
            assert secret not in path.read_text(encoding="utf-8", errors="replace"), path
