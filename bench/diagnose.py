"""Benchmark: ``offline-fix diagnose --json IMAGE`` against dissect's ``target-query -f evtx,services
IMAGE`` (its Windows event log and services plugins) on the same VHDX images, in the same run.

    .venv/bin/python -m bench.diagnose [--runs 5]

Images: the bundled demo disk (synthetic Windows Server 2016: 372 services with their driver
files, a small crash dump; no event logs) and, when ../shared/realdata is there, the same disk with
real event logs in winevt\\Logs (python-evtx's System.evtx, 1,601 records; the Server 2022
CodeIntegrity log; a Windows 11 Setup log). Both commands run as whole processes (start-up
included). diagnose does more than the peer: it also reads the dumps, probes every driver file,
verifies the signatures of the drivers that load, lists the catalogs and ranks; target-query only
dumps records. The catalog index cache is warm after the first run (as on a second diagnose).
Median of --runs after one untimed warm-up run of each, both with a bytecode cache (see
bench/drivers_list.py). Goals: >= 5x faster, and under 3 s.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from bench.common import BIN, CACHE, REALDATA, report
from bench.drivers_list import bytecode_cache, timed

GOAL = 5.0
LIMIT = 3.0
CI_2022 = ("dfir-artifact-museum/EventLogs_extracted/APTSimulatorVM_Server2022-20348/"
           "Microsoft-Windows-CodeIntegrity%4Operational.evtx")


def images() -> list[tuple[str, str]]:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from images import cache, demo, specs
    from images.spec import literal
    from images.synth.system import software_hive, system_hive

    out = [("demo disk (Server 2016, synthetic)", str(demo.build_demo(CACHE / "demo", log=lambda _m: None)))]
    if (REALDATA / "python-evtx/system.evtx").is_file():
        spec = specs.windows_disk(
            "gpt", literal(system_hive()), software=literal(software_hive()), files=demo.driver_files(),
            minidumps=demo.crash_evidence(), size_mib=192, timestamp=demo.TIMESTAMP,
            event_logs={"System.evtx": REALDATA / "python-evtx/system.evtx",
                        "Microsoft-Windows-CodeIntegrity%4Operational.evtx": REALDATA / CI_2022,
                        "Setup.evtx": REALDATA / "dfir-artifact-museum/EventLogs_extracted/RathbunVM_Win11-22000/Setup.evtx"})
        CACHE.mkdir(parents=True, exist_ok=True)
        out.append(("demo disk + real event logs", str(cache.get(spec, CACHE, "vhdx").path)))
    else:
        print(f"(skipping the event-log image: {REALDATA} is missing)")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.diagnose")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    state = tempfile.mkdtemp(prefix="offline-fix-bench-state-")
    bytecode_cache()
    for name, image in images():
        ours = timed([str(BIN / "offline-fix"), "diagnose", "--json", "--backup-dir", state, image], args.runs,
                     ok_codes=(0, 1))
        peer = timed([str(BIN / "target-query"), "-q", "-f", "evtx,services", image], args.runs)
        report(f"diagnose, {name}", ours, "target-query -f evtx,services", peer, GOAL)
        print(f"  diagnose {ours:.2f} s: {'under' if ours < LIMIT else 'NOT under'} {LIMIT:g} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
