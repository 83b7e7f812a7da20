"""Who is whose child, as Linux's /proc says: read once for a whole process tree, by the
benchmarks that sum a runner's memory and the tests that check a stop leaves no child."""
from __future__ import annotations

from pathlib import Path


def parent_pids() -> dict[int, int]:
    """``{pid: parent pid}`` of every process this moment."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int(
                    (entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue  # ended while read
    return parents


def children_of() -> dict[int, list[int]]:
    """``{parent pid: [child pids]}`` of every process this moment."""
    tree: dict[int, list[int]] = {}
    for pid, parent in parent_pids().items():
        tree.setdefault(parent, []).append(pid)
    return tree
