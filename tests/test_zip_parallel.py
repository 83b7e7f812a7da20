"""One archive, every worker: a zip is listed down to its members and each member is read
where it is scored; a tar is read by one worker and its images spread after reading.

Reading split from listing must give exactly the items of the whole-archive reader, checks
and messages included, on every hostile input; two worker processes must both score the
images of one zip and of one tar.gz, locally and on ``gs://``; and the dry run must name
the steps that spread the work as the job has them.
"""
from __future__ import annotations

import io
import os
import tarfile
import zipfile
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from cloud_fixtures import gcs_bucket, offline_google_auth, upload_tree  # noqa: F401
from crackscan import cli, sources
from pipeline import score
from pipeline.workers import TILES_SCORED, per_worker
from scoring_helpers import IN_MEMORY, concrete, read_predictions, zip_archive, zip_member
from test_hostile_inputs import build_corpus as hostile_corpus
from test_hostile_names import build_corpus as names_corpus

REPO = Path(__file__).resolve().parents[1]
MULTI = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]


def deferred(path: str, roots: tuple[str, ...] | None = None) -> list[sources.Item]:
    """Items as the pipeline reads them: listed where the file lands, read elsewhere."""
    reader = sources.DeferredReader(roots=roots)
    try:
        return [item for part in sources.locate(path, roots=roots)
                for item in reader.read(part)]
    finally:
        reader.close()


def by_uri(items: list[sources.Item]) -> dict[str, sources.Item]:
    found = {item.uri: item for item in items}
    assert len(found) == len(items), "two items of one uri"
    return found


@pytest.mark.parametrize("corpus", ["hostile inputs", "hostile names"])
def test_reading_split_from_listing_gives_the_items_of_the_whole_archive_reader(
        corpus: str, tmp_path: Path, real_data: Path):
    root = (hostile_corpus(tmp_path / "inputs", real_data).root if corpus == "hostile inputs"
            else names_corpus(tmp_path, real_data).root)
    roots = (str(root),)
    paths = sources.expand(str(root))  # as the pipeline lists them
    members = 0
    for path in paths:
        whole = by_uri(list(sources.read_items(path, roots=roots)))
        assert by_uri(deferred(path, roots)) == whole, path
        members += sum(sources.split_uri(uri)[1] is not None for uri in whole)
    assert len(paths) > 20 and members > 10


def test_a_zip_is_listed_in_slices_of_consecutive_members(tmp_path: Path, real_data: Path):
    jpeg = concrete(real_data, "Positive", 1)[0].read_bytes()
    count = 3 * sources.SLICES_PER_ARCHIVE - 10
    names = [f"flight/{index:04d}.jpg" for index in range(count)]
    archive = tmp_path / "many.zip"
    archive.write_bytes(zip_archive([zip_member(name, jpeg) for name in names]
                                    + [zip_member("../escape.jpg", jpeg)]))
    located = list(sources.locate(str(archive)))
    refused = [part for part in located if isinstance(part, sources.Item)]
    slices = [part for part in located if isinstance(part, sources.MembersToRead)]
    assert [item.uri for item in refused] == [f"{archive}!../escape.jpg"]
    assert "'..' escapes the archive" in refused[0].error
    assert len(slices) <= sources.SLICES_PER_ARCHIVE
    assert all(len(part.members) <= 3 for part in slices)
    listed = [uri for part in slices for _, uri in part.members]
    assert listed == [f"{archive}!{name}" for name in names]
    for part in slices:
        positions = [index for index, _ in part.members]
        assert positions == list(range(positions[0], positions[0] + len(positions)))


def test_a_zip_changed_after_listing_fails_its_members_by_name(tmp_path: Path,
                                                               real_data: Path):
    photos = [path.read_bytes() for path in concrete(real_data, "Negative", 3)]
    archive = tmp_path / "flight.zip"
    archive.write_bytes(zip_archive([zip_member(f"{index}.jpg", data)
                                     for index, data in enumerate(photos)]))
    located = list(sources.locate(str(archive)))
    archive.write_bytes(zip_archive([zip_member("other.jpg", photos[0])]))
    reader = sources.DeferredReader()
    items = [item for part in located for item in reader.read(part)]
    reader.close()
    assert [item.uri for item in items] == [f"{archive}!{index}.jpg" for index in range(3)]
    for item in items:
        assert item.data is None and "archive changed since it was listed" in item.error
    archive.unlink()
    (gone,) = [item for part in located[:1] for item in sources.DeferredReader().read(part)]
    assert gone.error.startswith("archive could not be opened again to read this member")


class RecordingPipeline(beam.Pipeline):
    """Keeps its result, whose metrics say which worker process scored what."""

    result: beam.runners.runner.PipelineResult

    def run(self, test_runner_api="AUTO"):
        self.result = super().run(test_runner_api)
        return self.result


def score_recorded(*argv: str | Path) -> tuple[dict, dict[str, int]]:
    """The summary of one run and the tiles each worker process scored in it."""
    args = [str(arg) for arg in argv]
    pipeline = RecordingPipeline(options=PipelineOptions([a for a in args if a in MULTI]))
    summary = score.run(args, test_pipeline=pipeline)
    assert summary is not None
    return summary, per_worker(pipeline.result, TILES_SCORED)


def rows_by_name(rows: list[dict]) -> dict[str, dict]:
    return {row["uri"].rsplit("!", 1)[1]: {k: v for k, v in row.items()
                                           if k not in ("uri", "scored_at")} for row in rows}


@pytest.fixture
def worker_path(monkeypatch: pytest.MonkeyPatch) -> None:
    # Worker processes import the pipeline by module name, like launch/common.sh sets up.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))


def survey_archives(folder: Path, real_data: Path) -> dict[str, Path]:
    """A stored zip and a tar.gz of the same 40 real photos, one member that is no image and
    one whose name escapes the archive."""
    members = [(f"flight/{path.parent.name}/{path.name}", path.read_bytes())
               for path in concrete(real_data, "Positive", 20) + concrete(real_data,
                                                                          "Negative", 20)]
    members += [("flight/notes.jpg", b"battery swapped\n"), ("../escape.jpg", members[0][1])]
    folder.mkdir()
    paths = {"zip": folder / "survey.zip", "tar.gz": folder / "survey.tar.gz"}
    with zipfile.ZipFile(paths["zip"], "w", zipfile.ZIP_STORED) as packed:
        for name, data in members:
            packed.writestr(name, data)
    with tarfile.open(paths["tar.gz"], "w:gz") as tarred:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tarred.addfile(info, io.BytesIO(data))
    return paths


def test_two_worker_processes_both_score_one_zip_and_one_tar_gz(
        tmp_path: Path, real_data: Path, tiny_model_dir: Path, worker_path: None):
    archives = survey_archives(tmp_path / "in", real_data)
    rows = {}
    for kind, archive in archives.items():
        out = tmp_path / f"out-{kind}"
        summary, tiles = score_recorded("--input", archive, "--model", tiny_model_dir,
                                        "--output", out, *MULTI)
        assert (summary["seen"], summary["scored"], summary["failed"]) == (42, 40, 2), kind
        assert summary["accounting_ok"] is True
        assert len(tiles) == 2 and min(tiles.values()) > 0, (kind, tiles)
        assert sum(tiles.values()) == summary["tiles"] == 40
        rows[kind] = rows_by_name(list(read_predictions(out).values()))
    assert rows["zip"] == rows["tar.gz"] and len(rows["zip"]) == 40


def test_a_zip_on_gcs_is_scored_by_both_workers_with_the_rows_of_a_local_one(
        tmp_path: Path, real_data: Path, tiny_model_dir: Path, gcs_bucket: str,
        worker_path: None):
    archive = survey_archives(tmp_path / "in", real_data)["zip"]
    upload_tree(tmp_path / "in", f"{gcs_bucket}/parallel")
    local, _ = score_recorded("--input", archive, "--model", tiny_model_dir,
                              "--output", tmp_path / "local")
    remote, tiles = score_recorded("--input", f"{gcs_bucket}/parallel/survey.zip",
                                   "--model", tiny_model_dir, "--output",
                                   tmp_path / "remote", *MULTI)
    assert (remote["seen"], remote["scored"], remote["failed"]) == (42, 40, 2)
    assert remote["accounting_ok"] is True
    assert len(tiles) == 2 and min(tiles.values()) > 0, tiles
    remote_rows = read_predictions(tmp_path / "remote")
    assert all(uri.startswith(f"{gcs_bucket}/parallel/survey.zip!") for uri in remote_rows)
    assert rows_by_name(list(remote_rows.values())) == rows_by_name(
        list(read_predictions(tmp_path / "local").values()))
    errors = ""
    for shard in remote["outputs"]["errors"]:
        with FileSystems.open(shard) as handle:
            errors += handle.read().decode()
    assert f"{gcs_bucket}/parallel/survey.zip!../escape.jpg" in errors
    assert "'..' escapes the archive" in errors and local["failed"] == 2


@pytest.mark.parametrize("runner", [MULTI, [IN_MEMORY]], ids=["two workers", "in memory"])
def test_the_dry_run_says_what_each_step_of_the_job_is_spread_over(
        runner: list[str], tmp_path: Path, real_data: Path, tiny_model_dir: Path,
        capsys: pytest.CaptureFixture[str]):
    argv = ["--input", str(real_data / "data" / "concrete"), "--model", str(tiny_model_dir),
            "--output", str(tmp_path / "out"), *runner]
    plan = score.run([*argv, "--dry-run"])
    capsys.readouterr()
    assert plan is not None and not (tmp_path / "out").exists()
    steps = {entry["step"]: entry["spread_over"] for entry in plan["parallelism"]}
    assert "images" in steps["DecodeAndTile"]
    if runner == MULTI:
        assert steps["ReadInputs/Spread"].startswith("archive members and files")
    else:  # one worker: nothing to spread over
        assert "ReadInputs/Spread" not in steps

    args, beam_args = cli.parse_with_beam_options(score.build_parser(), argv)
    pipeline = beam.Pipeline(options=PipelineOptions(beam_args))
    score.build(pipeline, score.prepare(args, pipeline.options))
    built = {label for label in pipeline.applied_labels if label.startswith("ReadInputs/")}
    assert set(steps) <= pipeline.applied_labels, set(steps) - pipeline.applied_labels
    assert ("ReadInputs/Spread" in built) == (runner == MULTI)


def test_a_zip_member_uri_is_read_alone(tmp_path: Path, real_data: Path):
    """Thumbnails and re-reads open one member, not every member before it."""
    photos = [path.read_bytes() for path in concrete(real_data, "Positive", 2)]
    archive = tmp_path / "pair.zip"
    archive.write_bytes(zip_archive([("first.jpg", b"\x00" * 10, 1 << 31, 0),
                                     zip_member("second.jpg", photos[1]),
                                     zip_member("second.jpg", photos[0])]))
    assert sources.read_uri(f"{archive}!second.jpg") == photos[1]
    with pytest.raises(OSError, match="duplicate archive member name"):
        sources.read_uri(f"{archive}!second.jpg!2")
    with pytest.raises(OSError, match="over the"):
        sources.read_uri(f"{archive}!first.jpg")
