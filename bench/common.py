"""Shared helpers for the benchmarks: timing whole commands, building the test disks once."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
REALDATA = Path(os.environ.get("OFFLINE_FIX_REALDATA", REPO.parent / "shared" / "realdata"))
BIN = Path(sys.executable).parent
CACHE = Path(os.environ.get("OFFLINE_FIX_BENCH_CACHE", Path(tempfile.gettempdir()) / "offline-fix-bench"))


def time_command(cmd: list[str], runs: int = 5, ok_codes=(0,)) -> tuple[float, list[float]]:
    """Median wall time of ``cmd`` (whole process, start-up included) over ``runs`` runs."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        times.append(time.perf_counter() - start)
        if proc.returncode not in ok_codes:
            raise SystemExit(f"{cmd[0]} failed ({proc.returncode}): {proc.stderr.strip()[:300]}")
    return statistics.median(times), times


def win7_image(fmt: str = "vhdx") -> Path:
    """A GPT disk with the real Windows 7 SYSTEM hive (regipy/SYSTEM.xz), built once."""
    sys.path.insert(0, str(REPO))
    from images import cache, specs

    CACHE.mkdir(parents=True, exist_ok=True)
    return Path(cache.get(specs.win7_gpt(system=REALDATA / "regipy/SYSTEM.xz"), CACHE, fmt).path)


def report(name: str, ours: float, peer_name: str, peer: float, goal: float | None = None) -> None:
    ratio = peer / ours if ours else float("inf")
    line = f"{name}: offline-fix {ours * 1000:.0f} ms, {peer_name} {peer * 1000:.0f} ms -> {ratio:.1f}x faster"
    if goal:
        line += f" (goal >= {goal:g}x: {'met' if ratio >= goal else 'NOT met'})"
    print(line)
