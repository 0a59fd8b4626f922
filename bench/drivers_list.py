"""Benchmark: ``offline-fix drivers list --all --json IMAGE`` against dissect's
``target-query -f services IMAGE`` on the same VHDX images, in the same run.

    .venv/bin/python -m bench.drivers_list [--runs 5]

Images: the bundled demo disk (synthetic Windows Server 2016, 372 services with their driver
files, built by images.demo into the bench cache) and, when ../shared/realdata is there, a GPT
disk with the real Windows 7 SYSTEM hive (467 service keys, no driver files). Both commands run
as whole processes (start-up included); --all makes offline-fix list every service as
target-query does (and offline-fix also resolves, stats and scans each driver file, reads the
class and device filters and judges boot-criticality). Median of --runs, after one untimed
warm-up run of each. Both run with a bytecode cache (in the bench cache folder, never in the
repository), as an installed tool does, even when PYTHONDONTWRITEBYTECODE is set. Goal: >= 5x.
"""

from __future__ import annotations

import argparse
import os
import sys

from bench.common import BIN, CACHE, REALDATA, report, time_command, win7_image

GOAL = 5.0


def bytecode_cache() -> None:
    """Let both commands keep compiled bytecode between runs, outside the repository: offline-fix is
    installed editable here, so without this it compiles its own modules at every start-up while
    dissect's come precompiled from site-packages."""
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ.setdefault("PYTHONPYCACHEPREFIX", str(CACHE / "pycache"))


def timed(cmd: list[str], runs: int, ok_codes=(0,)) -> float:
    """Median of ``runs`` after one untimed warm-up run (which fills the bytecode cache)."""
    time_command(cmd, 1, ok_codes)
    return time_command(cmd, runs, ok_codes)[0]


def images() -> list[tuple[str, str]]:
    from images.demo import build_demo

    out = [("demo disk (Server 2016, synthetic)", str(build_demo(CACHE / "demo", log=lambda _m: None)))]
    if (REALDATA / "regipy/SYSTEM.xz").is_file():
        out.append(("Windows 7 SYSTEM (realdata)", str(win7_image("vhdx"))))
    else:
        print(f"(skipping the Windows 7 image: {REALDATA} is missing)")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.drivers_list")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    bytecode_cache()
    for name, image in images():
        ours = timed([str(BIN / "offline-fix"), "drivers", "list", "--all", "--json", image], args.runs)
        peer = timed([str(BIN / "target-query"), "-q", "-f", "services", image], args.runs)
        report(f"drivers list, {name}", ours, "target-query -f services", peer, GOAL)
    return 0


if __name__ == "__main__":
    sys.exit(main())
