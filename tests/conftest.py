"""Session fixtures: real images checked into the repository, the shared real data beside it,
data sets built from them and models trained on them.

Two kinds of real data:

- ``real_data`` (``tests/fixtures/``, always present): 60 + 60 real concrete patches and a
  dozen field photos with their masks, laid out as ``../shared`` is (``data/concrete/...``,
  ``data/field/<source>/...``); ``tests/fixtures/README.md`` gives each file's source and
  licence. Tests that need a few real images use it, so they run from a plain checkout.
- ``shared_dir`` (``../shared``, or ``$CRACKSCAN_SHARED_DIR``): the full 4,000-image set, the
  pretrained backbone, 4800x6000 survey photos and the full field sources. Tests that need it
  are marked ``shared`` (``pytest -m "not shared"`` leaves them out) and skip, saying what they
  need, where it is absent. ``CRACKSCAN_SHARED_DIR=/nonexistent`` shows what a plain checkout
  runs.

Training once per session keeps the suite fast: every test that checks what a real model
learns uses the same two-stage MobileNetV2, trained on the 4,000 shared concrete images at
96 px from the pretrained backbone (``trained_model_dir``). Runs where only the scoring
plumbing matters use ``tiny_model_dir``, an untrained model saved in a second.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterator

import pytest

REPO = Path(__file__).resolve().parent.parent
# The shared data beside the repository; CRACKSCAN_SHARED_DIR points elsewhere (or, set to a
# folder that does not exist, shows what a plain checkout runs).
SHARED = Path(os.environ.get("CRACKSCAN_SHARED_DIR") or REPO.parent / "shared")
BACKBONE = SHARED / "weights" / "mobilenet_v2_1.0_no_top.weights.h5"
TEST_IMAGE_SIZE = 96
FIXTURES = REPO / "tests" / "fixtures"

# Fixtures that read ../shared: a test that uses one is marked ``shared`` automatically.
SHARED_FIXTURES = {"shared_dir": "the shared data folder",
                   "concrete_dir": "the 4,000 shared concrete images",
                   "backbone_weights": "the pretrained MobileNetV2 backbone weights file",
                   "concrete_dataset": "a data set built from the 4,000 shared concrete images",
                   "trained_model_dir": "a model trained from the pretrained backbone on the "
                                        "4,000 shared concrete images",
                   "training_report": "the metrics of a model trained from the pretrained "
                                      "backbone on the 4,000 shared concrete images"}
# What each of them needs in turn, left out of a skip reason that names the fixture itself.
IMPLIES = {"concrete_dir": {"shared_dir"}, "backbone_weights": {"shared_dir"},
           "concrete_dataset": {"shared_dir", "concrete_dir"},
           "trained_model_dir": {"shared_dir", "concrete_dir", "concrete_dataset",
                                 "backbone_weights"},
           "training_report": {"shared_dir", "concrete_dir", "concrete_dataset",
                               "backbone_weights", "trained_model_dir"}}


def require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is absent: the shared test data lives beside the repository "
                    f"in ../shared (CI always has it)")
    return path


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test that needs ../shared, and skip it up front, with what it needs, where
    the folder is absent."""
    for item in items:
        marker = item.get_closest_marker("shared")
        used = set(getattr(item, "fixturenames", ())) & set(SHARED_FIXTURES)
        implied = set().union(*(IMPLIES.get(name, set()) for name in used))
        needs = [what for name, what in SHARED_FIXTURES.items() if name in used - implied]
        if marker is None and not needs:
            continue
        if marker is None:
            item.add_marker(pytest.mark.shared)
        if not SHARED.exists():
            reason = marker.args[0] if marker is not None and marker.args else "; ".join(needs)
            item.add_marker(pytest.mark.skip(
                reason=f"needs ../shared ({SHARED} is absent): {reason}"))


@pytest.fixture(scope="session", autouse=True)
def batch_size_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The launcher's measured batch sizes go to a cache of the session's own: the suite
    measures as a first run on a machine does, and leaves the user's ~/.cache alone."""
    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(cache))
        yield cache


@pytest.fixture(scope="session")
def real_data() -> Path:
    """Real images checked into the repository, in the layout of ../shared."""
    return FIXTURES


@pytest.fixture(scope="session")
def fixture_concrete_dir(real_data: Path) -> Path:
    """60 + 60 real concrete patches (Positive/, Negative/), checked in."""
    return real_data / "data" / "concrete"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return require(SHARED)


@pytest.fixture(scope="session")
def concrete_dir(shared_dir: Path) -> Path:
    return require(shared_dir / "data" / "concrete")


@pytest.fixture(scope="session")
def backbone_weights(shared_dir: Path) -> Path:
    return require(BACKBONE)


@pytest.fixture(scope="session")
def concrete_dataset(concrete_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from training import build_dataset

    output = tmp_path_factory.mktemp("concrete-tfrecords")
    build_dataset.build(str(concrete_dir), str(output), shards=4)
    return output


@pytest.fixture(scope="session")
def trained_model_dir(concrete_dataset: Path, backbone_weights: Path,
                      tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real two-stage run: frozen-backbone head, then the top blocks fine-tuned."""
    from training import train

    output = tmp_path_factory.mktemp("model")
    train.main(["--data", str(concrete_dataset), "--output", str(output),
                "--weights", str(backbone_weights), "--image-size", str(TEST_IMAGE_SIZE),
                "--epochs", "1", "--fine-tune-epochs", "1", "--batch-size", "32"])
    return output


@pytest.fixture(scope="session")
def fixture_dataset(fixture_concrete_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """TFRecords of the checked-in concrete patches."""
    from training import build_dataset

    output = tmp_path_factory.mktemp("fixture-tfrecords")
    build_dataset.build(str(fixture_concrete_dir), str(output), shards=2)
    return output


@pytest.fixture(scope="session")
def training_report(trained_model_dir: Path) -> dict:
    return json.loads((trained_model_dir / "metrics.json").read_text())


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Untrained: for runs where only the plumbing matters, not the scores."""
    import keras
    from scoring_helpers import save_model, tiny_model

    keras.utils.set_random_seed(0)
    return save_model(tiny_model(), tmp_path_factory.mktemp("tiny-model"))
