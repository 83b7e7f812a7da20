"""Local stand-ins for Google Cloud services, started and stopped by the tests themselves.

Import the fixtures into a test module (``from cloud_fixtures import gcs_bucket``). Every
emulator listens on 127.0.0.1 at a free port; Google's auth is pointed at a closed local
port too, so no test can reach a real metadata server or a real project by accident.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

GCS_BUCKET = "crackscan-test"
BQ_PROJECT = "crackscan-test"
START_TIMEOUT_S = 60.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_http(url: str, process: subprocess.Popen, log: Path) -> None:
    """Polls until the emulator answers; fails with its log if it died or never answered."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"emulator exited with {process.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"emulator did not answer {url} within {START_TIMEOUT_S} s:\n"
                f"{log.read_text()}")


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="session")
def offline_google_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Credentials that are already valid and can never be refreshed off this machine.

    Without any, Beam retries Google's credential lookup with back-off for about 40 s per
    process before connecting anonymously. A user token that expires in 2099 is used as is
    (emulators ignore it); its refresh endpoint and the metadata server are closed local
    ports, and gcloud's config is an empty folder, so a developer's own login is never used.
    """
    closed = f"http://127.0.0.1:{free_port()}"
    folder = tmp_path_factory.mktemp("google-auth")
    credentials = folder / "credentials.json"
    credentials.write_text(json.dumps({
        "type": "authorized_user", "client_id": "crackscan-test", "client_secret": "unused",
        "refresh_token": "unused", "token": "emulator-token",
        "expiry": "2099-01-01T00:00:00Z", "token_uri": f"{closed}/token"}))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(credentials))
        patch.setenv("CLOUDSDK_CONFIG", str(folder))
        patch.setenv("GCE_METADATA_HOST", closed.removeprefix("http://"))
        patch.setenv("GCE_METADATA_IP", closed.removeprefix("http://"))
        patch.setenv("NO_GCE_CHECK", "True")
        patch.setenv("GOOGLE_CLOUD_PROJECT", "crackscan-test")
        yield


@pytest.fixture(scope="session")
def gcs_bucket(offline_google_auth: None,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``gs://crackscan-test``: a bucket in an in-memory ``gcp-storage-emulator``.

    The emulator runs in its own process so its request handling does not compete with the
    pipeline for this process's GIL. ``STORAGE_EMULATOR_HOST`` is what both
    google-cloud-storage and Beam's ``gs://`` file system (built on it) read.
    """
    port = free_port()
    log = tmp_path_factory.mktemp("gcs-emulator") / "emulator.log"
    with log.open("w") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "gcp_storage_emulator", "start", "--host", "127.0.0.1",
             "--port", str(port), "--in-memory", "--default-bucket", GCS_BUCKET],
            stdout=sink, stderr=subprocess.STDOUT)
    try:
        host = f"http://127.0.0.1:{port}"
        wait_for_http(f"{host}/storage/v1/b/{GCS_BUCKET}", process, log)
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("STORAGE_EMULATOR_HOST", host)
            yield f"gs://{GCS_BUCKET}"
    finally:
        stop(process)


def upload_tree(local: Path, prefix: str) -> list[str]:
    """Copies every file below ``local`` to ``prefix``, keeping relative paths."""
    from apache_beam.io.filesystems import FileSystems

    uris = []
    for path in sorted(p for p in local.rglob("*") if p.is_file()):
        uri = f"{prefix.rstrip('/')}/{path.relative_to(local).as_posix()}"
        with FileSystems.create(uri) as handle:
            handle.write(path.read_bytes())
        uris.append(uri)
    return uris


def install_duckdb_spatial(home: Path) -> None:
    """Puts the spatial extension where DuckDB looks under ``home``.

    bqemulator loads DuckDB's spatial extension at start and would download it, which fails
    offline; the ``duckdb-extension-spatial`` wheel carries the same file.
    """
    import duckdb
    import duckdb_extension_spatial

    [extension] = Path(duckdb_extension_spatial.__file__).parent.glob(
        f"extensions/v{duckdb.__version__}/spatial.duckdb_extension")
    platform = duckdb.sql("PRAGMA platform").fetchone()[0]
    target = home / ".duckdb" / "extensions" / f"v{duckdb.__version__}" / platform
    target.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(extension, target / extension.name)


@pytest.fixture(scope="session")
def bigquery_client(offline_google_auth: None,
                    tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A google-cloud-bigquery client of an in-memory ``bqemulator`` in project BQ_PROJECT.

    The emulator runs with a throwaway HOME, so the DuckDB extension copied there never
    touches the real home folder.
    """
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery

    home = tmp_path_factory.mktemp("bq-home")
    install_duckdb_spatial(home)
    port = free_port()
    log = home / "emulator.log"
    with log.open("w") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "bqemulator", "start", "--rest-host", "127.0.0.1",
             "--rest-port", str(port), "--grpc-host", "127.0.0.1",
             "--grpc-port", str(free_port()), "--project", BQ_PROJECT, "--ephemeral"],
            stdout=sink, stderr=subprocess.STDOUT, env={**os.environ, "HOME": str(home)})
    try:
        endpoint = f"http://127.0.0.1:{port}"
        wait_for_http(f"{endpoint}/bigquery/v2/projects/{BQ_PROJECT}/datasets", process, log)
        yield bigquery.Client(project=BQ_PROJECT, credentials=AnonymousCredentials(),
                              client_options={"api_endpoint": endpoint})
    finally:
        stop(process)
