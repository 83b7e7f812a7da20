"""``model_int8.tflite``: the model quantized to int8, listed in the card only if it scores
as the float file does on every source (``training.int8_gate``).

Three steps, each on its own split so that the test split judges a model chosen without it:

1. Calibration on the train split, equal shares of every (source, class)
   (``training.calibration``).
2. Which layers stay float: the quantization debugger ranks the layers by their own
   quantization error; the fewest top-ranked layers (of ``FLOAT_LAYER_COUNTS``) whose model
   passes the gate on the validation split are kept float. Float layers cost speed (each
   float island needs a dequantize and a quantize op, and runs XNNPACK's float kernels): on
   the field model, with all 68 layers int8 the file ran 1.67x the float one, with 8 float
   1.32x, with 16 float 1.13x (batch 8, 2 cores, interleaved but beside a training job),
   hence the cap at 8.
3. The gate on the test split. The card records its figures whether it passes or not; a
   file that fails is not written (a stale one from an earlier run is removed), so a model
   folder never holds an int8 file that the scorer must not run.
"""
from __future__ import annotations

import logging

import keras
import numpy as np
import tensorflow as tf
from apache_beam.io.filesystems import FileSystems

from crackscan import model_card
from training import calibration as calibration_lib
from training.int8_gate import GateLimits, failing_sources, gate, split_scores
from training.quantize import SelectiveQuantizer

FLOAT_LAYER_COUNTS = (0, 1, 2, 4, 8)
DEBUG_IMAGES = 64  # of the calibration images, for the debugger's per-layer errors
QUANTIZATION = ("int8 weights (per output channel for convolutions) and int8 activations "
                "(per tensor), calibrated on the train split; float32 input and output; the "
                "layers in float_layers stay float")

log = logging.getLogger("crackscan.int8_export")


def short_name(node: str) -> str:
    """A readable layer name from the converter's node name (the fused ops' names joined
    by ';'): the first op's path without the outer model and the op, e.g.
    ``mobilenetv2_1.00_224_1/block_2_depthwise_relu_1``."""
    first = next((part for part in node.split(";") if part), node)
    parts = first.split("/")
    return "/".join(parts[1:-1]) if len(parts) > 2 else first


def choose_float_layers(quantizer: SelectiveQuantizer, ranked: list[str], float_content: bytes,
                        data_dir: str, card: dict, limits: GateLimits,
                        counts: tuple[int, ...] = FLOAT_LAYER_COUNTS
                        ) -> tuple[bytes, list[str], list[dict]]:
    """The quantized model with the fewest top-ranked float layers that passes the gate on
    the validation split, else the one with the fewest flipped validation verdicts (ties to
    fewer float layers); its float layers; and every trial's validation figures."""
    tile_size, positive, threshold = _card_facts(card)
    tried = sorted({min(count, len(ranked) - 1) for count in counts})
    candidates = {f"float_layers={count}": quantizer.quantized(ranked[:count])
                  for count in tried}
    scores = split_scores({"float": float_content} | candidates, data_dir, "val", tile_size,
                          positive)
    trials = []
    for count, name in zip(tried, candidates):
        report = gate(scores, "float", name, threshold, limits, split="val")
        trials.append({"float_layers": count, "passed": report["passed"],
                       "flips": report["all"]["flips"],
                       "failing_sources": failing_sources(report)})
        log.info("int8 with %d float layers: %d validation verdicts flipped, %s", count,
                 report["all"]["flips"], "passes" if report["passed"] else "fails")
    passing = [trial for trial in trials if trial["passed"]]
    best = passing[0] if passing else min(trials, key=lambda t: (t["flips"],
                                                                  t["float_layers"]))
    count = best["float_layers"]
    return candidates[f"float_layers={count}"], ranked[:count], trials


def _card_facts(card: dict) -> tuple[int, int, float]:
    return (int(card["tile_size"]), card["class_names"].index(card["positive_class"]),
            float(card["threshold"]))


def export_int8(model: keras.Model, output: str, card: dict, data_dir: str,
                float_content: bytes, limits: GateLimits = GateLimits(),
                calibration: np.ndarray | None = None,
                counts: tuple[int, ...] = FLOAT_LAYER_COUNTS) -> dict:
    """Calibrates, chooses the float layers on validation and gates on test against
    ``float_content`` (the folder's float ``.tflite``). Writes the file and lists it only
    if it passed; returns the card with the ``int8`` report either way (the caller writes
    it). ``calibration`` replaces the train split's stratified images."""
    tile_size, positive, threshold = _card_facts(card)
    if calibration is None:
        calibration, per_stream = calibration_lib.calibration_images(data_dir, tile_size)
    else:
        per_stream = {"given": len(calibration)}
    debug = calibration[::max(1, len(calibration) // DEBUG_IMAGES)]
    quantizer = SelectiveQuantizer(model, tile_size, calibration, debug)
    errors = quantizer.layer_errors()
    content, float_layers, trials = choose_float_layers(
        quantizer, list(errors), float_content, data_dir, card, limits, counts)
    scores = split_scores({"float": float_content, "int8": content}, data_dir, "test",
                          tile_size, positive)
    report = gate(scores, "float", "int8", threshold, limits)
    card = {key: value for key, value in card.items()
            if key not in ("int8_file", "int8_sha256")}
    path = model_card.join(output, model_card.INT8_FILE)
    if report["passed"]:
        with tf.io.gfile.GFile(path, "wb") as handle:
            handle.write(content)
        card |= {"int8_file": model_card.INT8_FILE, "int8_sha256": model_card.file_sha256(path)}
    elif FileSystems.exists(path):
        FileSystems.delete([path])
    log.info("int8: %s on the test split (%d float layers); failing sources: %s",
             "passed, written" if report["passed"] else "refused, not written",
             len(float_layers), failing_sources(report) or "none")
    return card | {"int8": {
        "gate": report,
        "quantization": QUANTIZATION,
        "float_layers": [short_name(node) for node in float_layers],
        "quantized_layers": len(errors) - len(float_layers),
        "calibration": {"split": "train", "images": int(len(calibration)),
                        "per_stream": per_stream},
        "selection": {"rule": "the fewest of the layers the quantization debugger ranks "
                              "worst (rmse / scale) kept float that pass the gate on the "
                              "validation split, else the fewest flipped validation verdicts",
                      "split": "val", "trials": trials},
        "size_bytes": len(content),
    }}


def summary(card: dict) -> str:
    """The gate's figures as the command prints them: one line per source."""
    report = card["int8"]
    gate_report = report["gate"]
    verdict = (f"passed, {card['int8_file']} listed" if "int8_file" in card
               else "refused, not written")
    lines = [f"int8: {verdict} ({len(report['float_layers'])} float layers, "
             f"{report['quantized_layers']} "
             f"quantized; gate on {gate_report['split']} at threshold "
             f"{gate_report['threshold']:.4f})"]
    for name, figures in gate_report["by_source"].items():
        lines.append(f"  {name:<16} {figures['examples']:>5} windows  float "
                     f"{figures['float_accuracy']:.4f}  int8 {figures['int8_accuracy']:.4f}  "
                     f"flips {figures['flips']:>3} ({figures['flip_rate']:.2%})  "
                     f"{'pass' if figures['passed'] else 'FAIL'}")
    return "\n".join(lines)
