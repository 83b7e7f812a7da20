"""The figures of MODEL_CARD.md and the README, written from the shipped ``model_card.json``.

Figures copied into prose by hand drift from the model they describe the day another
model ships. So every figure table sits between two markers, ``<!-- card:NAME -->`` and
``<!-- /card:NAME -->``, and is rewritten from the card by::

    python -m crackscan.model_card_doc            # MODEL_CARD.md and README.md, in place
    python -m crackscan.model_card_doc --check    # exit status 1 when a table differs

The prose between the tables (intended use, failure modes) is the author's to keep true.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

REPO = Path(__file__).resolve().parents[1]
SHIPPED_CARD = REPO / "pipeline" / "default_model" / "model_card.json"
DOCUMENTS = (REPO / "MODEL_CARD.md", REPO / "README.md")
BLOCK = re.compile(r"(?P<open><!-- card:(?P<name>[a-z0-9-]+) -->\n)(?P<body>.*?)"
                   r"(?P<close><!-- /card:(?P=name) -->)", re.DOTALL)
NOT_APPLICABLE = "n/a"


class DocError(ValueError):
    """A document names a table this module does not write."""


def _percent(share: float | None) -> str:
    return NOT_APPLICABLE if share is None else f"{100 * share:.1f}%"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def views_text(card: dict[str, Any]) -> str:
    """How many passes a tile costs under the card: one, a flip average, or a cascade."""
    band = card.get("cascade")
    if band:
        return (f"{band['views']} cascade: one pass a tile, all views for the tiles whose "
                f"one-pass crack probability lies from {band['low']:.3f} to "
                f"{band['high']:.3f} ({_percent(band['rescored_share']['test'])} of the "
                f"test tiles)")
    return card.get("flip_average") or "none (one pass a tile)"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _false_alarms(metrics: dict[str, Any]) -> str:
    (intact_right, intact_flagged), _ = metrics["confusion_matrix"]["rows_true_columns_predicted"]
    intact = intact_right + intact_flagged
    if not intact:
        return f"{NOT_APPLICABLE} (no intact windows)"
    return f"{intact_flagged} of {intact:,} ({_percent(intact_flagged / intact)})"


def _windows(metrics: dict[str, Any]) -> str:
    counts = metrics["counts"]
    return f"{counts['total']:,} ({counts['positive']:,} / {counts['negative']:,})"


def _auc(metrics: dict[str, Any]) -> str:
    return NOT_APPLICABLE if metrics.get("roc_auc") is None else f"{metrics['roc_auc']:.3f}"


def _by_source(card: dict[str, Any], split: str) -> str:
    sources = card["metrics_by_source"][split]
    overall = card["metrics"][split]
    rows = [[name, _windows(m), _percent(m["accuracy"]), _percent(m["recall"]),
             _false_alarms(m), _auc(m)] for name, m in sorted(sources.items())]
    rows.append(["**all**", _windows(overall), f"**{_percent(overall['accuracy'])}**",
                 _percent(overall["recall"]), _false_alarms(overall), _auc(overall)])
    return _table([f"source ({split} windows)", "windows (cracked / intact)", "accuracy",
                   "recall", "false alarms", "ROC AUC"], rows)


def _photos(card: dict[str, Any]) -> str:
    rule = card["photo_rule"]
    test = rule["test"]

    def row(name: str, figures: dict[str, Any]) -> list[Any]:
        intact, rate = figures["intact_photos"], figures["false_alarm_rate"]
        flagged = (f"{round(rate * intact)} of {intact:,} ({_percent(rate)})" if intact
                   else NOT_APPLICABLE)
        return [name, f"{figures['cracked_photos']:,}", _percent(figures["recall"]), flagged]

    rows = [row(name, figures) for name, figures in sorted(test["by_source"].items())]
    rows.append(row("**all**", test))
    return (f"Rule: {rule['rule']} (`tiles_needed` = {rule['tiles_needed']}, chosen by "
            f"{rule['chosen_by']}).\n\n"
            + _table(["source (whole test photos)", "cracked photos", "recall",
                      "intact photos flagged"], rows))


def _photo_size(card: dict[str, Any]) -> str:
    """How the photo rule's false alarms grow with a photo's tile count, where the card
    records it (models trained from 2026-12-07)."""
    rule = card["photo_rule"]
    growth = rule.get("false_alarms_by_tile_count", {}).get("rule")
    if not growth:
        return ("This card does not record how false alarms grow with a photo's tile count: "
                "its model was trained before training measured it.\n")
    counts = sorted({int(n) for rates in growth.values() for n in rates})
    rows = [[name, *(_percent(rates.get(str(n))) for n in counts)]
            for name, rates in sorted(growth.items())]
    text = _table(["intact photo of n tiles, flagged", *(f"n = {n:,}" for n in counts)], rows)
    survey = rule.get("survey_size", {}).get("test")
    if survey:
        text += (f"\nTest photos of {rule['survey_tiles']} tiles each, made per source from its "
                 f"own tiles: {_percent(survey['recall'])} of {survey['cracked_photos']:,} "
                 f"cracked photos found, {_percent(survey['false_alarm_rate'])} of "
                 f"{survey['intact_photos']:,} intact ones flagged.\n")
    return text + f"\n{rule['false_alarms_by_tile_count'].get('how', '')}\n"


def _model(card: dict[str, Any]) -> str:
    teachers = card.get("teachers")
    teacher_text = "none" if not teachers else (
        ", ".join(f"`{t['model']}` (`model.tflite` sha256 `{t['tflite_sha256'][:12]}`)"
                  for t in teachers["models"])
        + f"; {teachers['views']} view(s), weight {teachers['weight']}")
    rows = [
        ["name", card["name"]],
        ["model version (in every prediction row)", f"`{card['model_sha256'][:12]}`"],
        ["file scored", f"`{card['tflite_file']}`, sha256 `{card['tflite_sha256'][:12]}`"],
        ["input", card["input"]],
        ["output", card["output"]],
        ["flip average", views_text(card)],
        ["tile size", f"{card['tile_size']} px"],
        ["threshold (crack probability of a tile)", f"{card['threshold']:.3f}"],
        ["threshold rule", card["threshold_rule"]],
        ["teachers", teacher_text],
        ["weight average (EMA momentum)", card.get("ema_momentum") or "none"],
        ["backbone weights", card["weights"]],
        ["trained with", ", ".join(f"{k} {v}" for k, v in sorted(card["versions"].items()))],
    ]
    return _table(["", "shipped model"], rows)


def _data(card: dict[str, Any]) -> str:
    rows = [[s["name"], s["kind"], f"{s['photos']:,}",
             *(f"{s['examples'][split]['total']:,}" for split in ("train", "val", "test")),
             s["licence"]] for s in card["training_sources"]]
    counts = card["data"]["counts"]
    rows.append(["**all**", "", f"{sum(s['photos'] for s in card['training_sources']):,}",
                 *(f"{counts[split]['total']:,}" for split in ("train", "val", "test")), ""])
    train = counts["train"]
    return (_table(["source", "kind", "photos", "train", "val", "test",
                    "licence, as the card records it"], rows)
            + f"\nTraining examples: {train['Positive']:,} cracked, {train['Negative']:,} "
              f"intact, of which {train['hard_negative']:,} hard negatives (joints). "
              f"Split rule: {card['data']['split_rule']}. Window rule: "
              f"{card['data']['window_rule']}.\n")


def _reproduce(card: dict[str, Any]) -> str:
    return "```bash\n" + "\n".join(card["reproduce"]) + "\n```\n"


def _headline(card: dict[str, Any]) -> str:
    test = card["metrics_by_source"]["test"]
    rows = [[name, _percent(m["accuracy"]), _false_alarms(m)] for name, m in sorted(test.items())]
    rows.append(["**all**", _percent(card["metrics"]["test"]["accuracy"]),
                 _false_alarms(card["metrics"]["test"])])
    photos = card["photo_rule"]["test"]
    sources = ", ".join(source["name"] for source in card["training_sources"])
    return (f"MobileNetV2 trained on {len(card['training_sources'])} sources ({sources}); "
            f"flip average: {views_text(card)}; threshold "
            f"{card['threshold']:.3f}.\n\n"
            + _table(["source (test windows)", "accuracy", "false alarms"], rows)
            + f"\nWhole test photos: {_percent(photos['recall'])} of "
              f"{photos['cracked_photos']:,} cracked photos found, "
              f"{_percent(photos['false_alarm_rate'])} of {photos['intact_photos']:,} intact "
              f"ones flagged. Model version `{card['model_sha256'][:12]}`.\n")


# A source whose masks are this narrow marks centre lines, not widths (uav75's).
CENTRE_LINE_PX = 2.0


def _width(figures: dict[str, Any]) -> str:
    if figures.get("width_error_px") is None:
        return NOT_APPLICABLE
    if (figures.get("true_width_median_px") or CENTRE_LINE_PX + 1) <= CENTRE_LINE_PX:
        return f"{NOT_APPLICABLE} (masks are centre lines)"
    return f"{figures['width_error_px']:.1f} ({figures['width_bias_px']:+.1f})"


def _masks(card: dict[str, Any]) -> str:
    """The crack-mask model's section (``mask_model``, issue 38), where one is attached."""
    mask = card.get("mask_model")
    if not mask:
        return ("No crack-mask model is attached to this model. `python -m "
                "training.mask_export --mask-dir MASK_DIR --model-dir MODEL_DIR` attaches one "
                "trained by `python -m training.train_masks`.\n")
    val = mask.get("val_metrics_by_source", {})
    rows = [[name, f"{m['photos']:,}", f"{m['precision']:.3f}", f"{m['recall']:.3f}",
             f"**{m['f1']:.3f}**", f"{val[name]['f1']:.3f}" if name in val else NOT_APPLICABLE,
             _width(m)] for name, m in sorted(mask["metrics_by_source"].items())]
    return (f"`{mask['file']}`, sha256 `{mask['sha256'][:12]}`: {mask['backbone']}; pixel "
            f"threshold {mask['threshold']:.2f}, chosen on validation; tolerance "
            f"{mask['tolerance_px']} px. Trained on "
            f"{', '.join(s['name'] for s in mask['training_sources'])}.\n\n"
            + _table([f"source (whole test photos, {mask['tolerance_px']} px tolerance)",
                      "photos", "precision", "recall", "F1", "val F1",
                      "width error px (bias)"], rows)
            + "\n```bash\n" + "\n".join(mask["reproduce"]) + "\n```\n")


WRITERS: dict[str, Callable[[dict[str, Any]], str]] = {
    "model": _model,
    "training-data": _data,
    "test-by-source": lambda card: _by_source(card, "test"),
    "val-by-source": lambda card: _by_source(card, "val"),
    "photos-by-source": _photos,
    "photo-size": _photo_size,
    "reproduce": _reproduce,
    "headline": _headline,
    "masks": _masks,
}


def _body(name: str, card: dict[str, Any]) -> str:
    if name not in WRITERS:
        raise DocError(f"<!-- card:{name} -->: no such table; known: {', '.join(WRITERS)}")
    return WRITERS[name](card)


def render(text: str, card: dict[str, Any]) -> str:
    """``text`` with every marked table rewritten from ``card``, the rest untouched."""
    return BLOCK.sub(lambda match: match["open"] + _body(match["name"], card) + match["close"],
                     text)


def stale_tables(text: str, card: dict[str, Any]) -> list[str]:
    """The names of the marked tables in ``text`` that differ from what ``card`` gives."""
    return [match["name"] for match in BLOCK.finditer(text)
            if match["body"] != _body(match["name"], card)]


def tables(text: str) -> list[str]:
    return [match["name"] for match in BLOCK.finditer(text)]


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m crackscan.model_card_doc",
                                     description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("documents", nargs="*", type=Path, default=list(DOCUMENTS),
                        help="markdown files to rewrite (default: MODEL_CARD.md README.md)")
    parser.add_argument("--card", type=Path, default=SHIPPED_CARD,
                        help="model_card.json to read (default: the shipped model's)")
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit status 1 when a table differs")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    card = json.loads(args.card.read_text(encoding="utf-8"))
    stale = []
    for document in args.documents:
        text = document.read_text(encoding="utf-8")
        for name in stale_tables(text, card):
            stale.append(f"{document.name}: {name}")
        if not args.check:
            document.write_text(render(text, card), encoding="utf-8")
    verb = "differs from the card" if args.check else "rewritten from the card"
    for table in stale:
        print(f"{table}: {verb}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
