"""Install crackscan: the training package, the Beam scoring pipeline and their shared core.

The TensorFlow distribution is chosen at install time: the CPU build by default on Linux and
Windows (no CUDA wheels on laptops, CI or Dataflow CPU workers) and ``tensorflow`` on macOS,
where ``tensorflow-cpu`` has no wheels; set ``CRACKSCAN_TENSORFLOW=tensorflow`` (or any
distribution name) to choose for every platform. The same file is Dataflow's ``--setup_file``.
"""
import os

from setuptools import find_packages, setup

TENSORFLOW_VERSION = "2.21.0"
CHOSEN = os.environ.get("CRACKSCAN_TENSORFLOW")
TENSORFLOW = [f"{CHOSEN}=={TENSORFLOW_VERSION}"] if CHOSEN else [
    f"tensorflow-cpu=={TENSORFLOW_VERSION}; sys_platform != 'darwin'",
    f"tensorflow=={TENSORFLOW_VERSION}; sys_platform == 'darwin'",
]

setup(
    name="crackscan",
    version="0.1.0",
    description="Concrete crack classifier training and bulk scoring with Apache Beam",
    license="Apache-2.0",
    license_files=["LICENSE"],
    classifiers=[
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3.10",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Programming Language :: Python :: 3.13",
        "Operating System :: POSIX :: Linux",
        "Operating System :: MacOS",
        "Topic :: Scientific/Engineering :: Image Recognition",
    ],
    python_requires=">=3.10,<3.14",
    packages=find_packages(include=["crackscan", "crackscan.*", "training", "training.*",
                                    "pipeline", "pipeline.*"]),
    # The shipped field model and the demo's sample survey travel with the code.
    package_data={"pipeline": ["default_model/*", "sample_survey/*.md",
                               "sample_survey/*.csv", "sample_survey/photos/*"]},
    install_requires=[
        *TENSORFLOW,
        # The CPU build of TensorFlow does not pull TensorBoard; the callback needs it.
        "tensorboard>=2.21,<2.22",
        "apache-beam[gcp]==2.77.0",
        # LiteRT: the default scoring runtime, ~2x Keras on CPU (XNNPACK; bench/README.md).
        "ai-edge-litert>=2.0,<3",
        "numpy>=1.26",
        "pillow>=10.3",
        # HEIC/HEIF, what newer drones and phones write, opened through Pillow.
        "pillow-heif>=1.0,<2",
        # Resizing small images into a tile exactly as training's tf.image.resize does,
        # bit-exact on every machine and 3x faster than Pillow's (crackscan/tiles.py).
        "opencv-python-headless>=4.8,<6",
        "google-cloud-storage>=2.16",
        "matplotlib>=3.8",
        # Crack length and width from a mask: its skeleton (scikit-image) and distance
        # transform (SciPy) (crackscan/crack_measure.py).
        "scipy>=1.11",
        "scikit-image>=0.22",
        "tqdm>=4.66",
    ],
    extras_require={
        "test": ["pytest>=8", "pytest-timeout>=2.3",
                 # Cloud tests: a local GCS emulator; the sdist test builds and installs
                 # the package as Dataflow's --setup_file would.
                 "gcp-storage-emulator>=2024.8", "build>=1.2", "setuptools>=65",
                 # Local BigQuery: bqemulator on DuckDB 1.5.5, whose spatial extension it
                 # loads at start; the wheel below carries it, so nothing is downloaded.
                 "bqemulator>=1.4", "duckdb==1.5.5", "duckdb-extension-spatial==1.5.5"],
    },
    entry_points={
        "console_scripts": [
            "crackscan-build-dataset=training.build_dataset:main",
            "crackscan-train=training.train:console",
            "crackscan-export-tflite=training.export_tflite:console",
            "crackscan-score=pipeline.score:main",
            "crackscan-demo=pipeline.demo:console",
            "crackscan-train-demo=training.demo:console",
        ],
    },
)
