"""Tiles per model call, measured for the model file on this machine: the launcher times
the shipped LiteRT file, keeps the fastest candidate, caches it, and a run reports it."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from crackscan.model_card import read_card
from pipeline.batch_size import (CANDIDATES, cache_key, cache_path, cpu_identity,
                                 fastest_batch_size, int8_dot_product_flags, read_cpuinfo)
from pipeline.inference import SHIPPED_MODEL_DIR
from pipeline.score import run
from scoring_helpers import IN_MEMORY, score

SHIPPED_TFLITE = Path(SHIPPED_MODEL_DIR) / "model.tflite"
SAMPLE = Path(SHIPPED_MODEL_DIR).parent / "sample_survey" / "photos"


@pytest.fixture
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return cache_path()


def shipped_sha256() -> str:
    return read_card(SHIPPED_MODEL_DIR)["tflite_sha256"]


def unreadable() -> bytes:
    raise AssertionError("the file was read although the cache had the answer")


def test_fastest_candidate_is_measured_once_then_read_from_the_cache(own_cache: Path):
    sha = shipped_sha256()
    size, rates, cached = fastest_batch_size(SHIPPED_TFLITE.read_bytes, sha, 1, 224)
    assert not cached and set(rates) == set(CANDIDATES)
    assert all(rate > 0 for rate in rates.values())
    assert rates[size] == max(rates.values())
    entry = json.loads(own_cache.read_text())[cache_key(sha, 1)]
    assert entry["batch_size"] == size

    again, _, cached = fastest_batch_size(unreadable, sha, 1, 224)
    assert (again, cached) == (size, True)
    # Another thread count is another measurement, kept beside the first.
    _, _, cached = fastest_batch_size(SHIPPED_TFLITE.read_bytes, sha, 2, 224)
    assert not cached
    assert set(json.loads(own_cache.read_text())) == {cache_key(sha, 1), cache_key(sha, 2)}


def test_a_damaged_cache_is_measured_over(own_cache: Path):
    own_cache.parent.mkdir(parents=True)
    own_cache.write_text("{not json")
    sha = shipped_sha256()
    size, _, cached = fastest_batch_size(SHIPPED_TFLITE.read_bytes, sha, 1, 224)
    assert not cached and size in CANDIDATES
    own_cache.write_text(json.dumps({cache_key(sha, 1): {"batch_size": 7}}))  # no candidate
    _, _, cached = fastest_batch_size(SHIPPED_TFLITE.read_bytes, sha, 1, 224)
    assert not cached


def test_run_uses_and_reports_the_cached_measurement(own_cache: Path, tmp_path: Path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for path in sorted(SAMPLE.iterdir())[:3]:
        shutil.copy(path, photos)
    # A planted answer no real measurement gives here: the run must take it from the cache.
    own_cache.parent.mkdir(parents=True)
    own_cache.write_text(json.dumps({cache_key(shipped_sha256(), 2): {"batch_size": 16}}))
    summary = score("--input", photos, "--output", tmp_path / "cached", "--litert-threads", "2")
    assert summary["inference"] == {"runtime": "litert", "batch_size": 16, "litert_threads": 2,
                                    "batch_size_from": "measured here (cached)",
                                    "runtime_from": "no int8 file in the model card",
                                    "runtime_rates": None, "runtime_speedup": None}
    assert summary["scored"] == 3

    chosen = score("--input", photos, "--output", tmp_path / "chosen", "--batch-size", "3")
    assert chosen["inference"]["batch_size"] == 3
    assert chosen["inference"]["batch_size_from"] == "--batch-size"


def test_remote_workers_take_the_runtimes_default(own_cache: Path, tmp_path: Path):
    plan = run(["--input", str(SAMPLE), "--output", str(tmp_path / "out"), "--dry-run",
                "--runner=PortableRunner", "--job_endpoint=localhost:1", IN_MEMORY])
    assert plan["inference"] == {"runtime": "litert", "batch_size": 8, "litert_threads": 1,
                                 "batch_size_from": "default",
                                 "runtime_from": "no int8 file in the model card",
                                 "runtime_rates": None, "runtime_speedup": None}
    assert not own_cache.exists()


def test_one_cpu_name_with_other_vector_extensions_is_another_machine():
    """Cloud VMs often report only "AMD EPYC": the flags tell a VNNI host from an AVX2 one."""
    avx2 = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 avx avx2 fma\n"
    vnni = avx2.replace("fma", "fma avx512f avx512_vnni")
    second_core = avx2 + avx2.replace("processor\t: 0", "processor\t: 1")
    assert cpu_identity(avx2) != cpu_identity(vnni)
    assert cpu_identity(avx2) == cpu_identity(second_core)
    assert cpu_identity(avx2).startswith("AMD EPYC|int8=none|flags=")
    assert cpu_identity("model name\t: Apple M2\n") == "Apple M2"


def test_the_cache_key_names_the_cpus_int8_dot_product_flags():
    """int8 beats float only with fast int8 dot products: a cached choice made on a VNNI
    host must not follow a disk to an AVX2 one, nor an Arm one's across dotprod."""
    avx2 = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx avx2 avx512f\n"
    vnni = avx2.replace("avx512f", "avx512f avx512_vnni avx512_bf16")
    avx_vnni = avx2.replace("avx512f", "avx_vnni")
    assert int8_dot_product_flags(avx2) == ()
    assert int8_dot_product_flags(vnni) == ("avx512_vnni",)
    assert int8_dot_product_flags(avx_vnni) == ("avx_vnni",)
    assert "|int8=avx512_vnni|" in cpu_identity(vnni)
    assert len({cpu_identity(text) for text in (avx2, vnni, avx_vnni)}) == 3

    neoverse_n1 = "processor\t: 0\nFeatures\t: fp asimd aes crc32 atomics asimddp\n"
    neoverse_v1 = neoverse_n1.replace("asimddp", "asimddp i8mm svei8mm")
    cortex_a72 = neoverse_n1.replace(" asimddp", "")
    assert int8_dot_product_flags(neoverse_v1) == ("asimddp", "i8mm", "svei8mm")
    assert int8_dot_product_flags(cortex_a72) == ()
    assert len({cpu_identity(text) for text in (neoverse_n1, neoverse_v1, cortex_a72)}) == 3
    assert "|int8=none|" in cpu_identity(cortex_a72)


def test_this_machines_cpuinfo_is_read_once_and_keys_the_cache():
    read_cpuinfo.cache_clear()
    key = cache_key("ab" * 32, 1)
    again = cache_key("ab" * 32, 1)
    assert key == again and read_cpuinfo.cache_info().misses == 1
    assert cpu_identity() in key
    if read_cpuinfo():  # Linux: the key names this CPU's int8 flags
        assert f"|int8={'+'.join(int8_dot_product_flags()) or 'none'}|" in key
