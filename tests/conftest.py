"""Session fixtures: the shared real data, a data set built from it, a model trained on it.

Training once per session keeps the suite fast: every test that needs a real model uses
the same two-stage MobileNetV2, trained on the 4,000 shared concrete images at 96 px. Runs
where only the plumbing matters use ``tiny_model_dir``, an untrained model saved in a second.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
BACKBONE = SHARED / "weights" / "mobilenet_v2_1.0_no_top.weights.h5"
TEST_IMAGE_SIZE = 96


def require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is absent: the shared test data lives beside the repository "
                    f"in ../shared (CI always has it)")
    return path


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
                "--epochs", "2", "--fine-tune-epochs", "2", "--batch-size", "32"])
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
