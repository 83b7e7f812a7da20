"""The source distribution Dataflow's ``--setup_file`` builds on every worker installs and runs.

The sdist is built from a copy of the repository (building writes ``*.egg-info`` beside
``setup.py``), installed without dependencies into a fresh virtual environment that borrows
this environment's installed dependencies through a ``.pth`` file (so the test needs no
network and no TensorFlow download), and started from an empty folder, so every module it
imports must come from the installed sdist rather than from the repository.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import venv
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("crackscan", "pipeline", "training")
NOT_SHIPPED = (".git", ".venv", "build", "dist", "*.egg-info", "__pycache__",
               ".pytest_cache", "runs", "demo-output")


def check(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, timeout=300,
                            check=False, **kwargs)
    assert result.returncode == 0, f"{command} failed:\n{result.stdout}\n{result.stderr}"
    return result


def test_sdist_installs_into_a_fresh_environment_and_starts_the_pipeline(tmp_path: Path):
    source = tmp_path / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(*NOT_SHIPPED))
    check([sys.executable, "-m", "build", "--sdist", "--no-isolation",
           "--outdir", str(tmp_path / "dist"), str(source)])
    [sdist] = (tmp_path / "dist").glob("crackscan-*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = archive.getnames()
    for package in PACKAGES:
        assert any(f"/{package}/__init__.py" in name for name in names), package
    assert any(name.endswith("/pipeline/score.py") for name in names)

    environment = tmp_path / "env"
    venv.create(environment, with_pip=False)
    python = environment / "bin" / "python"
    target = Path(check([str(python), "-c", "import sysconfig; "
                         "print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    # Dependencies only: appended after the environment's own site-packages, and as a plain
    # path its own .pth files (this checkout's editable install) are not processed.
    (target / "borrowed-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    check([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
           "--no-build-isolation", "--no-index", str(sdist)])

    empty = tmp_path / "cwd"
    empty.mkdir()
    env = {key: value for key, value in os.environ.items()
           if key not in ("PYTHONPATH", "PYTHONHOME")}
    where = check([str(python), "-c", "import crackscan, pipeline.score, training.train; "
                   "print(pipeline.score.__file__)"], cwd=empty, env=env).stdout.strip()
    assert Path(where).is_relative_to(target), where
    assert not (target / "tests").exists(), "the test suite was installed as a package"
    result = check([str(python), "-m", "pipeline.score", "--help"], cwd=empty, env=env)
    for flag in ("--input", "--model", "--output", "--dry-run", "--skip-scored"):
        assert flag in result.stdout, flag
    scripts = environment / "bin"
    assert (scripts / "crackscan-score").exists()
    check([str(scripts / "crackscan-score"), "--help"], cwd=empty, env=env)
    # The README's main command, installed: the sample survey and the model travel with the
    # package, and a successful run exits with status 0.
    demo = check([str(scripts / "crackscan-demo"), "--output", str(tmp_path / "demo")],
                 cwd=empty, env=env)
    assert "14 of 14 verdicts match" in demo.stdout
    assert (tmp_path / "demo" / "cracks.geojson").exists()
