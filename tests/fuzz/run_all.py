"""Run every atheris fuzz target for a set time; ``make fuzz`` runs this.

    .venv/bin/python -m tests.fuzz.run_all                 # each target FUZZ_SECONDS (60) seconds
    FUZZ_SECONDS=600 FUZZ_TARGETS=hive,vhdx .venv/bin/python -m tests.fuzz.run_all

Each target runs in its own process (libFuzzer exits the process when it stops) with its seeds
(tests/fuzz/seeds.py, written to the work folder) and the committed corpus
(tests/fuzz/corpus/<target>/, read only). libFuzzer stops a target at its first finding; the
runner records the crash file and restarts the target for the time left (at most MAX_RESTARTS
times). A hang is a finding (``-timeout``), so is a memory blow-up (``-rss_limit_mb``).

Work folder: FUZZ_WORKDIR, default out/fuzz (ignored by git): <target>/corpus (what the fuzzer
kept), <target>/crash-* / timeout-* / oom-* (findings), <target>/log.txt, summary.json.
Exit code 0 when no target found anything, 1 otherwise (reproduce a finding with
``python -m tests.fuzz.fuzz_<target> CRASH_FILE``, then make it a regression test in
tests/test_fuzz_regressions.py and a minimized file in tests/fuzz/corpus/<target>/).
"""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

TARGETS = ("hive", "hive_log", "catalog", "pe", "dump", "evtx", "partitions", "vhd", "vhdx", "ntfs")
HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
MAX_RESTARTS = 5
PER_INPUT_TIMEOUT = 20  # seconds: an input running longer is a hang
RSS_LIMIT_MB = 2048
_EXECS = re.compile(r"^#(\d+)\s", re.M)
_DONE = re.compile(r"Done (\d+) runs in (\d+) second")
_ARTIFACT = re.compile(r"Test unit written to (\S+)")


def write_seeds(name: str, folder: Path) -> int:
    target = importlib.import_module(f"tests.fuzz.fuzz_{name}").TARGET
    folder.mkdir(parents=True, exist_ok=True)
    seeds = target.seeds()
    for i, seed in enumerate(seeds):
        (folder / f"seed-{i:03d}").write_bytes(seed)
    return target.max_len


def run_target(name: str, seconds: int, work: Path) -> dict:
    folder = work / name
    corpus = folder / "corpus"
    max_len = write_seeds(name, corpus)
    extra = [str(CORPUS / name)] if (CORPUS / name).is_dir() else []
    execs, findings, runs = 0, [], 0
    deadline = time.monotonic() + seconds
    with open(folder / "log.txt", "w") as log:
        while runs <= MAX_RESTARTS:
            left = int(deadline - time.monotonic())
            if left < 2:
                break
            runs += 1
            cmd = [sys.executable, "-m", f"tests.fuzz.fuzz_{name}", f"-max_total_time={left}",
                   f"-timeout={PER_INPUT_TIMEOUT}", f"-rss_limit_mb={RSS_LIMIT_MB}", f"-max_len={max_len}",
                   f"-artifact_prefix={folder}/", "-print_final_stats=1", str(corpus), *extra]
            proc = subprocess.run(cmd, cwd=HERE.parents[1], capture_output=True, text=True, errors="replace",
                                  timeout=left + 120)
            log.write(f"$ {' '.join(cmd)}\n{proc.stderr}\n{proc.stdout}\n")
            done = _DONE.findall(proc.stderr)
            counts = [int(n) for n in _EXECS.findall(proc.stderr)]
            execs += int(done[-1][0]) if done else (max(counts) if counts else 0)
            artifacts = _ARTIFACT.findall(proc.stderr)
            if not artifacts:
                if proc.returncode != 0:
                    findings.append({"artifact": None, "what": f"exit code {proc.returncode}", "excerpt": proc.stderr[-2000:]})
                break
            excerpt = proc.stderr[proc.stderr.find("=== Uncaught"):][:3000] if "=== Uncaught" in proc.stderr else proc.stderr[-3000:]
            findings.append({"artifact": artifacts[-1], "what": _kind(artifacts[-1]), "excerpt": excerpt})
    return {"target": name, "seconds": seconds, "executions": execs, "runs": runs, "findings": findings,
            "corpus_files": len(list(corpus.iterdir()))}


def _kind(artifact: str) -> str:
    base = os.path.basename(artifact)
    return base.split("-", 1)[0]  # crash, timeout, oom, leak


def main(argv: list[str] | None = None) -> int:
    seconds = int(os.environ.get("FUZZ_SECONDS", "60"))
    wanted = [t for t in os.environ.get("FUZZ_TARGETS", ",".join(TARGETS)).split(",") if t]
    unknown = sorted(set(wanted) - set(TARGETS))
    if unknown:
        print(f"run_all: unknown targets {unknown}; known: {', '.join(TARGETS)}", file=sys.stderr)
        return 2
    work = Path(os.environ.get("FUZZ_WORKDIR", HERE.parents[1] / "out" / "fuzz")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    results = []
    print(f"{'target':<12} {'seconds':>7} {'executions':>11} {'exec/s':>8} {'corpus':>7}  findings", flush=True)
    for name in wanted:
        r = run_target(name, seconds, work)
        results.append(r)
        kinds = ", ".join(f"{f['what']} {os.path.basename(f['artifact'] or '-')}" for f in r["findings"]) or "none"
        print(f"{name:<12} {seconds:>7} {r['executions']:>11} {r['executions'] / max(seconds, 1):>8.0f} "
              f"{r['corpus_files']:>7}  {kinds}", flush=True)
    (work / "summary.json").write_text(json.dumps(results, indent=2))
    found = sum(len(r["findings"]) for r in results)
    print(f"{sum(r['executions'] for r in results)} executions, {found} findings; details in {work}/summary.json")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
