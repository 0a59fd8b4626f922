"""The fast NTFS path of offline_fix/target/fs.py (raw MFT records and $I30 indexes) against the
bytes written into the image by libntfs-3g and against dissect.ntfs (the slow path, another
implementation), plus the mapping-pairs and fixup decoders on hand-made bytes."""

from __future__ import annotations

import random

import pytest

from offline_fix.target import fs as F
from offline_fix.target import ntfs_raw as R
from offline_fix.target import open_target

BIG = 1200  # names in one folder: a multi-level $I30 tree (and, with ntfs-3g, an attribute list)


def _content() -> dict[str, bytes]:
    rnd = random.Random(5)
    files = {}
    for i in range(BIG):
        size = rnd.choice([0, 9, 700, 5000])
        files[f"Windows\\Big\\n{i:05d}_{'y' * rnd.randint(0, 70)}.txt"] = rnd.randbytes(size)
    files["Windows\\Mixed\\zeros.sys"] = bytes(300_000)
    files["Windows\\Mixed\\late.sys"] = bytes(150_000) + b"\x01"
    files["Windows\\Mixed\\tiny.sys"] = b"MZ"
    files["Windows\\Mixed\\large.bin"] = rnd.randbytes(1_300_000)
    return files


@pytest.fixture(scope="module")
def volume(image_cache):
    from images import specs
    from images.spec import literal
    from images.synth.system import system_hive

    files = _content()
    spec = specs.windows_disk("gpt", literal(system_hive()), files={k: literal(v) for k, v in files.items()}, size_mib=96)
    target = open_target(str(image_cache(spec, "raw").path))
    vol = next(v for v in target.volumes if v.filesystem == "ntfs")
    slow = F.NtfsFS(vol._disk.stream(vol.offset, vol.size), name="dissect only")
    slow._fast = lambda path: None  # noqa: SLF001 - the dissect.ntfs path alone, as the oracle
    slow._index = lambda parts: None
    yield vol.fs(), slow, files
    target.close()


def test_fast_reads_equal_written_bytes_and_dissect(volume):
    fs, slow, files = volume
    for path, data in files.items():
        assert fs.read_bytes(path) == data, path
        assert fs.stat(path).to_dict() == slow.stat(path).to_dict(), path
    for folder in ("", "Windows", "Windows\\Big", "Windows\\Mixed"):
        assert [e.to_dict() for e in fs.listdir(folder)] == [e.to_dict() for e in slow.listdir(folder)]
    assert fs._fast("Windows\\Mixed\\large.bin") is not None  # the fast path did the work
    assert fs._folders[("windows", "big")] is not None
    assert len(fs._folders[("windows", "big")][0]) == BIG


def test_fast_stream_seeks_and_case_insensitive_names(volume):
    fs, _slow, files = volume
    data = files["Windows\\Mixed\\large.bin"]
    with fs.open("windows\\MIXED\\Large.BIN") as fh:
        fh.seek(1_000_003)
        assert fh.read(70_000) == data[1_000_003:1_070_003]
        fh.seek(-5, 2)
        assert fh.read() == data[-5:]
        assert fh.read(10) == b""


def test_file_probe_on_ntfs(volume):
    from offline_fix.windows.services import FileProbe

    fs, _slow, _files = volume
    probe = FileProbe(fs)
    assert probe.probe("Windows\\Mixed\\ZEROS.sys").to_dict() == {
        "path": "Windows\\Mixed\\zeros.sys", "exists": True, "size": 300_000, "all_zero": True}
    assert probe.probe("Windows\\Mixed\\late.sys").all_zero is False
    assert probe.probe("Windows\\Mixed\\tiny.sys").size == 2
    assert probe.probe("Windows\\Mixed\\none.sys").exists is False


def test_missing_and_refused_paths_keep_their_errors(volume):
    from offline_fix.errors import NotFound, Refused

    fs, _slow, _files = volume
    with pytest.raises(NotFound):
        fs.stat("Windows\\Mixed\\nope.sys")
    with pytest.raises(NotFound):
        fs.open("Windows\\Mixed")
    with pytest.raises(Refused):
        fs.listdir("Windows\\..\\x")


@pytest.mark.parametrize("pairs, lowest, highest, runs", [
    # 16 clusters at LCN 0x100, 5 at 0x100 - 16 (a negative delta), 3 sparse
    (bytes([0x21, 0x10, 0x00, 0x01, 0x11, 0x05, 0xF0, 0x01, 0x03, 0x00]), 0, 23,
     [(0, 0x100, 16), (16, 0xF0, 5), (21, None, 3)]),
    (bytes([0x11, 0x04, 0x20, 0x00]), 8, 11, [(8, 0x20, 4)]),  # a later piece of an attribute list
    (bytes([0x21, 0x10, 0x00]), 0, 15, None),  # truncated
    (bytes([0x11, 0x04, 0x20, 0x00]), 0, 9, None),  # covers fewer clusters than HighestVcn says
    (bytes([0x11, 0x04, 0x80, 0x00]), 0, 3, None),  # a negative LCN
    (bytes([0x11, 0x00, 0x20, 0x00]), 0, -1, None),  # a zero-length run
])
def test_mapping_pairs(pairs, lowest, highest, runs):
    assert R._mapping_pairs(pairs, 0, len(pairs), lowest, highest) == runs


def test_fixups_detect_a_torn_record():
    block = bytearray(1024)
    block[:4] = b"FILE"
    block[4:8] = (48).to_bytes(2, "little") + (3).to_bytes(2, "little")
    block[48:54] = b"\x07\x00AABB"
    block[510:512] = block[1022:1024] = b"\x07\x00"
    good = bytearray(block)
    assert R._apply_fixups(good, b"FILE")
    assert (good[510:512], good[1022:1024]) == (b"AA", b"BB")
    block[1022:1024] = b"\x08\x00"  # the second sector was written by another update
    assert not R._apply_fixups(block, b"FILE")
    assert not R._apply_fixups(bytearray(good), b"INDX")


class _Volume:
    """A stand-in for _RawNtfs: 512-byte clusters over a bytes buffer."""

    cluster = 512

    def __init__(self, data: bytes) -> None:
        self.data = data

    def read_volume(self, offset: int, size: int):
        return self.data[offset:offset + size] if offset + size <= len(self.data) else None


def test_run_stream_sparse_runs_and_valid_data_length():
    disk = bytes(range(256)) * 40
    runs = [(0, 4, 2), (2, None, 1), (3, 1, 1)]  # clusters 4-5, a hole, cluster 1
    stream = R._RunStream(_Volume(disk), ("runs", runs, 1800, 1700), "x")
    data = stream.read()
    assert data == disk[2048:3072] + bytes(512) + disk[512:676] + bytes(100)  # zeros past byte 1700
    bad = R._RunStream(_Volume(disk[:1000]), ("runs", [(0, 4, 1)], 512, 512), "y")
    with pytest.raises(R.FilesystemError):
        bad.read()
