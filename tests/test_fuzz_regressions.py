"""What the fuzzers found, kept found: one test per finding, a replay of the committed corpus
(tests/fuzz/corpus/<target>/), and a short hypothesis run of every fuzz target (tests/fuzz/),
each asserting that only OfflineFixError subclasses escape a parser.

The long, coverage-guided runs are atheris's (``make fuzz``, tests/fuzz/run_all.py); these
runs are short so that the whole file stays under a minute.
"""

from __future__ import annotations

import importlib
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from offline_fix.errors import OfflineFixError
from offline_fix.target.errors import FilesystemError
from tests.fuzz import harness
from tests.fuzz.run_all import TARGETS

CORPUS = Path(__file__).parent / "fuzz" / "corpus"


def target(name: str) -> harness.Target:
    return importlib.import_module(f"tests.fuzz.fuzz_{name}").TARGET


@pytest.fixture(scope="module")
def all_seeds() -> dict[str, list[bytes]]:
    return {name: target(name).seeds() for name in TARGETS}


# -- the seeds are sound: each target accepts its first seed (else the fuzzing tests nothing) --------

@pytest.mark.parametrize("name", TARGETS)
def test_first_seed_parses_cleanly(name, all_seeds):
    seeds = all_seeds[name]
    assert seeds, f"{name}: no seed"
    target(name).one_input(seeds[0])  # no error at all, not even an OfflineFixError


# -- the committed corpus ------------------------------------------------------------------------

CORPUS_FILES = sorted(p for p in CORPUS.glob("*/*") if p.is_file())


@pytest.mark.parametrize("path", CORPUS_FILES, ids=[f"{p.parent.name}/{p.name}" for p in CORPUS_FILES])
def test_corpus_replays_within_the_error_hierarchy(path):
    target(path.parent.name).check(path.read_bytes())


# -- a short hypothesis run per target -----------------------------------------------------------

@st.composite
def mutated(draw, seeds: list[bytes]) -> bytes:
    """A seed with a few byte-level mutations (flips, overwrites with boundary values, cuts,
    insertions, a duplicated block), as a mutating fuzzer makes them."""
    buf = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(("flip", "word", "cut", "insert", "dup")))
        pos = draw(st.integers(0, max(len(buf) - 1, 0)))
        if op == "flip" and buf:
            buf[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "word" and len(buf) >= pos + 4:
            value = draw(st.sampled_from((0, 1, 0x7F, 0x80, 0xFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0x1000, 0xFFFFFFF8)))
            struct.pack_into("<I", buf, pos, value)
        elif op == "cut":
            del buf[pos:pos + draw(st.integers(1, 4096))]
        elif op == "insert":
            buf[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "dup" and buf:
            buf[pos:pos] = buf[pos:pos + draw(st.integers(1, 512))]
    return bytes(buf)


EXAMPLES = {"hive": 25, "hive_log": 25, "ntfs": 40, "evtx": 25}


@pytest.mark.parametrize("name", TARGETS)
def test_short_hypothesis_run(name, all_seeds):
    t = target(name)

    @settings(max_examples=EXAMPLES.get(name, 60), deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(mutated(all_seeds[name]))
    def run(data: bytes) -> None:
        t.check(data)  # anything but an OfflineFixError fails the test

    run()


# -- findings, one test each -----------------------------------------------------------------------

def _ntfs_input(edit) -> bytes:
    """The NTFS target's seed (the file's and the folder's MFT records) after EDIT(file record)."""
    from tests.fuzz.fuzz_ntfs import RECORD, make_seeds

    seed = bytearray(make_seeds()[0])
    record = bytearray(seed[1:1 + RECORD])
    edit(record)
    seed[1:1 + RECORD] = record
    return bytes(seed)


def _data_attribute(record: bytearray) -> int:
    pos = struct.unpack_from("<H", record, 0x14)[0]
    while True:
        atype, length = struct.unpack_from("<II", record, pos)
        if atype == 0x80:
            return pos
        pos += length


def test_ntfs_attribute_record_length_zero_is_a_filesystem_error():
    """atheris, fuzz_ntfs: an attribute whose RecordLength is 0 made dissect.ntfs raise
    BrokenMftError out of NtfsFS and ntfs_file_layout (found as crash-0082153...)."""
    from tests.fuzz.fuzz_ntfs import one_input

    def zero_length(record):
        struct.pack_into("<I", record, _data_attribute(record) + 4, 0)

    with pytest.raises(FilesystemError, match="MFT record unreadable"):
        one_input(_ntfs_input(zero_length))


def test_ntfs_truncated_mapping_pairs_are_a_filesystem_error():
    """atheris, fuzz_ntfs: mapping pairs running past their attribute made dissect.ntfs raise
    IndexError while parsing the record (crash-c88c737..., replayed from the corpus as
    ntfs/mapping-pairs-truncated) or struct.error while listing the runs (this input)."""
    from tests.fuzz.fuzz_ntfs import one_input

    def runs_past_end(record):
        attr = _data_attribute(record)
        length = struct.unpack_from("<I", record, attr + 4)[0]
        runs = attr + struct.unpack_from("<H", record, attr + 0x20)[0]
        record[runs:attr + length] = b"\x0f" * (attr + length - runs)  # 15 length bytes, no offset, to the end

    with pytest.raises(FilesystemError, match="data runs unreadable"):
        one_input(_ntfs_input(runs_past_end))
    with pytest.raises(FilesystemError, match="MFT record unreadable"):
        one_input((CORPUS / "ntfs" / "mapping-pairs-truncated").read_bytes())


# atheris, fuzz_evtx (timeout-7396d9f..., minimized to 8 bytes): the common string table entry 32
# of the first chunk leads to 0x7c4d -> 0x5561 -> 0x100, and 0x100 is that table entry itself.
EVTX_LOOP_PATCH = {0x1100: b"\x4d\x7c", 0x6561: b"\x00\x01\x00", 0x8c4d: b"\x61\x55\x00"}
EVTX_SAMPLE = "evtx-attack-samples/DE_KernelDebug_and_TestSigning_ON_Security_4826.evtx"


def test_evtx_string_table_loop_is_skipped_not_a_hang(realdata, tmp_path):
    """The evtx package follows a chunk's string chains without a visited set, holding the GIL:
    this log hung any command reading it, for good. Now the chunk is skipped with a finding.
    Run in a subprocess so that a regression fails on the timeout instead of hanging the suite."""
    import subprocess
    import sys

    data = bytearray(realdata(EVTX_SAMPLE).read_bytes())
    for at, patch in EVTX_LOOP_PATCH.items():
        data[at:at + len(patch)] = patch
    path = tmp_path / "loop.evtx"
    path.write_bytes(bytes(data))
    code = ("import sys, json\n"
            "from offline_fix.evidence.eventlogs import read_log\n"
            "r = read_log(sys.argv[1])\n"
            "print(json.dumps([f.message for f in r.findings]))\n")
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parent.parent)
    assert proc.returncode == 0, proc.stderr
    assert "string table entry 32 leads into a loop" in proc.stdout


def test_vhdx_fixer_copes_with_a_file_shorter_than_its_headers():
    """atheris, fuzz_vhdx: the harness's own CRC fixer failed on a 4-byte file (a harness bug,
    not a product one); such a file must come back as a VhdxError."""
    harness_input = b"\x01" + struct.pack("<Q", 4) + struct.pack("<IH", 0, 4) + b"vhdx"
    with pytest.raises(OfflineFixError):
        target("vhdx").one_input(harness_input)


# -- the harness itself --------------------------------------------------------------------------

def test_sparse_encoding_round_trips():
    data = bytes(1000) + b"abc" + bytes(70) + b"d" * 70000 + bytes(5000) + b"end"
    f = harness.SparseFile(harness.sparse_encode(data))
    assert f.size == len(data)
    assert f.read() == data
    f.seek(1001)
    assert f.read(4) == b"bc\x00\x00"


def test_split_and_join_round_trip():
    parts = [b"primary", b"", b"log2"]
    assert harness.split(harness.join(*parts), 3) == parts
    assert harness.split(b"\xff", 3) == [b"", b"", b""]  # any input splits
