"""Benchmark: enumerate every key and value under ControlSet001\\Services of regipy/SYSTEM.xz.

    .venv/bin/python -m bench.hive_read [--repeat N] [--regipy-timeout SECONDS]

Runs, on the same decompressed file in the same process: our reader (offline_fix.hive), hivex's
Python binding (C, Debian python3-hivex), python-registry, dissect.regf and regipy. Each reader
walks the subtree depth first, reading every key's name and timestamp and every value's name,
type and decoded data (hivex: value_string / value_multiple_strings / value_dword / value_qword by
type, else value_value). Every run must find 1,765 keys and 7,886 values (issue 3).

For each repetition a fresh hive object is opened (so that no parser's caches carry over), then
the walk is timed alone; "open" is the time to open the hive from its path. The best of N runs is
reported, with the median. regipy is run once, stopped after --regipy-timeout seconds.
"""

from __future__ import annotations

import argparse
import lzma
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
REALDATA = Path(os.environ.get("OFFLINE_FIX_REALDATA", REPO.parent / "shared" / "realdata"))
SERVICES = r"ControlSet001\Services"
EXPECTED = (1765, 7886)


# -- one walker per library: (open(path) -> handle, walk(handle) -> (keys, values)) -----------------
def ours_open(path):
    from offline_fix.hive import Hive

    return Hive.open(path)


def ours_walk(hive):
    keys = values = 0
    for key in hive.key(SERVICES).walk():
        keys += 1
        key.name, key.timestamp  # noqa: B018
        for value in key.values():
            values += 1
            value.name, value.type, value.data  # noqa: B018
    return keys, values


def hivex_open(path):
    import hivex

    return hivex.Hivex(str(path))


def hivex_walk(h):
    node = h.root()
    for part in SERVICES.split("\\"):
        node = h.node_get_child(node, part)
    keys = values = 0
    stack = [node]
    while stack:
        node = stack.pop()
        keys += 1
        h.node_name(node), h.node_timestamp(node)  # noqa: B018
        for v in h.node_values(node):
            values += 1
            h.value_key(v)
            typ, length = h.value_type(v)
            if typ in (1, 2, 6):
                h.value_string(v)
            elif typ == 7:
                h.value_multiple_strings(v)
            elif typ in (4, 5) and length == 4:
                h.value_dword(v)
            elif typ == 11 and length == 8:
                h.value_qword(v)
            else:
                h.value_value(v)
        stack.extend(reversed(h.node_children(node)))
    return keys, values


def pyregistry_open(path):
    from Registry import Registry

    return Registry.Registry(str(path))


def pyregistry_walk(reg):
    keys = values = 0
    stack = [reg.open(SERVICES)]
    while stack:
        key = stack.pop()
        keys += 1
        key.name(), key.timestamp()  # noqa: B018
        for v in key.values():
            values += 1
            v.name(), v.value_type(), v.value()  # noqa: B018
        stack.extend(key.subkeys())
    return keys, values


def dissect_open(path):
    from dissect.regf import regf

    return regf.RegistryHive(open(path, "rb"))  # noqa: SIM115  (kept open by the hive object)


def dissect_walk(hive):
    keys = values = 0
    stack = [hive.open(SERVICES)]
    while stack:
        key = stack.pop()
        keys += 1
        key.name, key.timestamp  # noqa: B018
        for v in key.values():
            values += 1
            v.name, v.type, v.value  # noqa: B018
        stack.extend(key.subkeys())
    return keys, values


def regipy_open(path):
    from regipy.registry import RegistryHive

    return RegistryHive(str(path))


def regipy_walk(hive):
    keys = values = 0
    stack = [hive.get_key("\\" + SERVICES)]
    while stack:
        key = stack.pop()
        keys += 1
        key.name, key.header.last_modified  # noqa: B018
        for v in key.iter_values():
            values += 1
            v.name, v.value_type, v.value  # noqa: B018
        stack.extend(key.iter_subkeys())
    return keys, values


READERS = [
    ("offline-fix", ours_open, ours_walk),
    ("hivex (C)", hivex_open, hivex_walk),
    ("python-registry", pyregistry_open, pyregistry_walk),
    ("dissect.regf", dissect_open, dissect_walk),
]


# -- timing -----------------------------------------------------------------------------------------
def measure(open_, walk, path, repeat):
    opens, walks = [], []
    counts = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        handle = open_(path)
        t1 = time.perf_counter()
        counts = walk(handle)
        t2 = time.perf_counter()
        opens.append(t1 - t0)
        walks.append(t2 - t1)
        if EXPECTED and counts != EXPECTED:
            raise SystemExit(f"wrong counts {counts}, expected {EXPECTED}")
    return {"open": min(opens), "walk": min(walks), "walk_median": statistics.median(walks), "counts": counts}


class _Timeout(Exception):
    pass


def measure_once_limited(open_, walk, path, seconds):
    def alarm(_signum, _frame):
        raise _Timeout

    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        return measure(open_, walk, path, 1)
    except _Timeout:
        return None
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--regipy-timeout", type=int, default=60)
    args = parser.parse_args(argv)
    source = REALDATA / "regipy" / "SYSTEM.xz"
    if not source.is_file():
        print(f"missing {source}", file=sys.stderr)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "SYSTEM"
        with lzma.open(source) as fin, open(path, "wb") as fout:
            shutil.copyfileobj(fin, fout)
        print(f"{path.stat().st_size:,} bytes; walking {SERVICES}: {EXPECTED[0]:,} keys, "
              f"{EXPECTED[1]:,} values, data decoded; best of {args.repeat} (median)")
        results = {}
        for name, open_, walk in READERS:
            try:
                results[name] = measure(open_, walk, path, args.repeat)
            except ImportError as exc:
                print(f"{name:<16} not installed ({exc})")
        result = measure_once_limited(regipy_open, regipy_walk, path, args.regipy_timeout)
        if result is None:
            print(f"{'regipy':<16} stopped after {args.regipy_timeout} s (not finished)")
        else:
            results["regipy (1 run)"] = result
    ours = results["offline-fix"]
    print(f"{'reader':<16}{'walk ms':>10}{'median':>10}{'open ms':>10}   walk ratio (theirs / ours)")
    for name, r in results.items():
        ratio = r["walk"] / ours["walk"]
        print(f"{name:<16}{r['walk'] * 1000:>10.1f}{r['walk_median'] * 1000:>10.1f}{r['open'] * 1000:>10.1f}"
              f"   {ratio:6.2f}x")
    if "hivex (C)" in results:
        hx = results["hivex (C)"]
        print(f"offline-fix / hivex: walk {ours['walk'] / hx['walk']:.2f}x (goal <= 2), "
              f"open+walk {(ours['walk'] + ours['open']) / (hx['walk'] + hx['open']):.2f}x")
    if "python-registry" in results:
        pr = results["python-registry"]
        print(f"python-registry / offline-fix: walk {pr['walk'] / ours['walk']:.2f}x (goal >= 3)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
