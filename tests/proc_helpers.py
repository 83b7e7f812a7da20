"""What Linux's /proc says about a process: its children and the sockets it listens on.

The Flink and worker-pool tests check where each process they start listens and that
stopping it leaves no child behind; only /proc tells that without extra packages.
"""
from __future__ import annotations

import os
from pathlib import Path

from bench.processes import children_of

HAS_PROC = Path("/proc/self/net/tcp").exists()
LISTEN = "0A"  # the state column of /proc/net/tcp
LOOPBACK = {"0100007F",  # 127.0.0.1, as /proc/net/tcp writes it (little-endian)
            "00000000000000000000000001000000",  # ::1
            "0000000000000000FFFF00000100007F"}  # ::ffff:127.0.0.1


def alive(pid: int) -> bool:
    """Whether ``pid`` runs: a zombie has ended, it only waits for its parent to notice."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def children(pid: int) -> list[int]:
    """The live child processes of ``pid``."""
    return [child for child in children_of().get(pid, []) if alive(child)]


def listening_sockets(pid: int) -> list[tuple[str, int]]:
    """The (address as /proc writes it, port) pairs process ``pid`` listens on."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd)
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = []
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == LISTEN and fields[9] in inodes:
                address, port = fields[1].split(":")
                found.append((address, int(port, 16)))
    return found


def on_loopback(address: str) -> bool:
    return address in LOOPBACK
