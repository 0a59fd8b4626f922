"""`offline-fix inspect` against dissect's `target-info` on the same VHDX, in the same run.

Both are timed as whole commands (interpreter start-up included), median of several runs.
Goal (issue 2): at least 3x faster.
"""

from __future__ import annotations

import sys

from bench.common import BIN, report, time_command, win7_image


def main() -> int:
    image = win7_image("vhdx")
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    ours, _ = time_command([str(BIN / "offline-fix"), "inspect", "--json", str(image)], runs)
    peer, _ = time_command([str(BIN / "target-info"), str(image)], runs)
    print(f"image: {image} (GPT, NTFS, real Windows 7 SYSTEM hive)")
    report("inspect", ours, "target-info", peer, goal=3)
    return 0


if __name__ == "__main__":
    sys.exit(main())
