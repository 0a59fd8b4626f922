"""Fuzz target: crash dump headers (PAGEDUMP, PAGEDU64 with summary and triage parts, MDMP)."""

from __future__ import annotations

import io
import json

from offline_fix.evidence.dumps import read_dump
from tests.fuzz import seeds
from tests.fuzz.harness import Target, launch


def one_input(data: bytes) -> None:
    dump = read_dump(io.BytesIO(data), "fuzz.dmp")
    json.dumps(dump.to_dict(), default=str)
    _ = dump.summary
    dump.timeline_entries()


TARGET = Target("dump", one_input, seeds.dump_seeds)

if __name__ == "__main__":
    launch(__spec__.name)
