"""The mask model's figures as pictures: per-source bars and example overlays."""
from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (backend must be chosen first)
import numpy as np  # noqa: E402

from training.mask_eval import ScoredPhoto  # noqa: E402

MEASURES = ("precision", "recall", "f1")


def by_source(test: dict[str, dict], val: dict[str, dict], path: str,
              bar: float = 0.6) -> str:
    """Test precision, recall and F1 per source beside validation F1, with the bar."""
    names = sorted(test)
    fig, ax = plt.subplots(figsize=(1.6 * len(names) + 2, 4))
    width = 0.2
    x = np.arange(len(names))
    for offset, measure in enumerate(MEASURES):
        ax.bar(x + (offset - 1.5) * width, [test[n][measure] for n in names], width,
               label=f"test {measure}")
    ax.bar(x + 1.5 * width, [val.get(n, {}).get("f1", 0.0) for n in names], width,
           label="val f1", color="grey")
    ax.axhline(bar, color="black", linestyle="--", linewidth=1, label=f"bar F1 {bar}")
    ax.set_xticks(x, [f"{n}\n({test[n]['photos']} photos)" for n in names])
    ax.set(ylim=(0, 1), ylabel="pixel score, 2 px tolerance",
           title="Crack masks per source (whole photos)")
    ax.legend(fontsize=8, ncol=3, loc="lower right")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def overlays(photos: list[ScoredPhoto], images: dict[str, np.ndarray], threshold: float,
             path: str, per_source: int = 3) -> str:
    """A few test photos per source: the photo, then truth (green) and prediction (red)
    drawn over it, yellow where they agree."""
    sources = sorted({photo.source for photo in photos})
    rows = [(source, photo) for source in sources
            for photo in [p for p in photos if p.source == source][:per_source]]
    fig, axes = plt.subplots(len(rows), 2, figsize=(6, 3 * len(rows)), squeeze=False)
    for (source, photo), (left, right) in zip(rows, axes):
        rgb = images[photo.uri]
        shown = rgb.astype(np.float32) * 0.6
        predicted = photo.probability >= threshold
        shown[..., 0] = np.where(predicted, 255, shown[..., 0])
        shown[..., 1] = np.where(photo.truth, 255, shown[..., 1])
        left.imshow(rgb)
        right.imshow(shown.astype(np.uint8))
        left.set_title(f"{source}: {os.path.basename(photo.uri)}", fontsize=7)
        right.set_title("truth green, predicted red, both yellow", fontsize=7)
        left.axis("off")
        right.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
