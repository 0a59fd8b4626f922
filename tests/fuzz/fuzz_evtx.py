"""Fuzz target: the EVTX wrapper (our header checks around the evtx package, record decoding,
event handlers, findings)."""

from __future__ import annotations

import io
import json

from offline_fix.evidence.eventlogs import read_log
from tests.fuzz import seeds
from tests.fuzz.harness import Target, launch


def one_input(data: bytes) -> None:
    result = read_log(io.BytesIO(data), "fuzz.evtx")
    json.dumps(result.to_dict(), default=str)
    result.timeline_entries()


TARGET = Target("evtx", one_input, seeds.evtx_seeds, max_len=1 << 17)

if __name__ == "__main__":
    launch(__spec__.name)
