"""Pictures of a training run: what people look at before they read metrics.json."""
from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (backend must be chosen first)
import numpy as np  # noqa: E402


def _save(fig: plt.Figure, path: str) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def training_curves(stages: list[tuple[str, dict[str, list[float]]]], path: str) -> str:
    """Loss and accuracy per epoch across both stages, with the stage boundary marked."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for axis, metric in zip(axes, ("loss", "accuracy")):
        start = 0
        for name, history in stages:
            epochs = np.arange(start + 1, start + len(history.get(metric, [])) + 1)
            for prefix, style in (("", "-"), ("val_", "--")):
                values = history.get(prefix + metric, [])
                if len(values):
                    axis.plot(epochs, values, style, marker="o", markersize=3,
                              label=f"{name} {'val' if prefix else 'train'}")
            start += len(history.get(metric, []))
            axis.axvline(start + 0.5, color="grey", linewidth=0.8, linestyle=":")
        axis.set_xlabel("epoch")
        axis.set_title(metric)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    return _save(fig, path)


def confusion_matrix(matrix: list[list[int]], class_names: list[str], path: str) -> str:
    fig, axis = plt.subplots(figsize=(4.2, 3.8))
    values = np.asarray(matrix)
    axis.imshow(values, cmap="Blues")
    for (row, col), value in np.ndenumerate(values):
        axis.text(col, row, str(value), ha="center", va="center",
                  color="white" if value > values.max() / 2 else "black", fontsize=13)
    axis.set_xticks(range(len(class_names)), class_names)
    axis.set_yticks(range(len(class_names)), class_names)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title("test confusion matrix")
    return _save(fig, path)


def image_grid(images: np.ndarray, titles: list[str], path: str, columns: int = 8,
               title: str = "") -> str:
    """A grid of 0-255 RGB images with a caption each (augmented samples, test mistakes)."""
    rows = max(1, int(np.ceil(len(images) / columns)))
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 1.6, rows * 1.8))
    for index, axis in enumerate(np.atleast_1d(axes).ravel()):
        axis.axis("off")
        if index < len(images):
            axis.imshow(np.clip(images[index], 0, 255).astype(np.uint8))
            axis.set_title(titles[index], fontsize=7)
    if title:
        fig.suptitle(title, y=1.0 + 0.1 / rows)
    return _save(fig, path)


def by_source(metrics: dict[str, dict], path: str) -> str:
    """Accuracy, recall and false-alarm rate of each source's test examples, side by side:
    a model that works on one kind of photo and fails on another shows it here first."""
    names = list(metrics)
    figures = (("accuracy", "accuracy", "tab:blue"), ("recall", "recall (cracks found)",
                                                     "tab:green"),
               ("false_alarm_rate", "false alarms (intact flagged)", "tab:red"))
    fig, axis = plt.subplots(figsize=(max(6.0, 1.3 * len(names) + 2), 4))
    width = 0.27
    for offset, (key, label, color) in enumerate(figures):
        values = [metrics[name][key] for name in names]
        positions = np.arange(len(names)) + (offset - 1) * width
        bars = axis.bar(positions, [v if v is not None else 0 for v in values], width,
                        label=label, color=color)
        for bar, value in zip(bars, values):
            axis.text(bar.get_x() + bar.get_width() / 2, bar.get_height() + 0.01,
                      "n/a" if value is None else f"{value:.1%}", ha="center", fontsize=6)
    axis.set_xticks(range(len(names)),
                    [f"{n}\n({metrics[n]['counts']['total']})" for n in names], fontsize=8)
    axis.set_ylim(0, 1.12)
    axis.set_title("test windows by source")
    axis.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3)
    return _save(fig, path)


def false_alarm_growth(growth: dict[str, dict[str, dict[str, float]]], path: str) -> str:
    """Intact photos flagged against their tile count, one line per source and rule: how a
    rule that looks safe on crops fares on a 20-megapixel survey photo."""
    fig, axis = plt.subplots(figsize=(7, 4))
    styles = {"rule": "-", "any_tile_at_the_tile_threshold": ":"}
    for rule, by_source in growth.items():
        for index, (source, rates) in enumerate(sorted(by_source.items())):
            counts = [int(n) for n in rates]
            axis.plot(counts, [rates[str(n)] for n in counts], styles.get(rule, "--"),
                      color=plt.cm.tab10(index % 10), marker="o", markersize=3,
                      label=f"{source} ({rule.replace('_', ' ')})")
    axis.set_xscale("log")
    axis.set_ylim(0, 1.02)
    axis.set_xlabel("tiles in the photo")
    axis.set_ylabel("intact photos flagged")
    axis.set_title("false alarms by photo size (test tiles, independent draws)")
    axis.legend(fontsize=6, loc="upper left", ncol=2)
    return _save(fig, path)
