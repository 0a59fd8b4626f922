"""offline_fix.target.ntfs3g, checked with independent readers: ntfs-3g's ntfscat/ntfsls (C
tools, separate processes), The Sleuth Kit (icat/istat) and pytsk3."""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
import subprocess
from datetime import datetime, timezone

import pytest

from offline_fix.errors import CorruptInput, NotFound, OfflineFixError, Refused, Unsupported
from offline_fix.target import ntfs3g
from offline_fix.target.ntfs3g import NtfsVolume

pytestmark = pytest.mark.skipif(shutil.which("mkntfs") is None and not os.path.exists("/usr/sbin/mkntfs"), reason="ntfs-3g missing")

SIZES = (0, 1, 700, 4096, (1 << 20) + 1)


def _mkntfs(path, size_mib=32):
    with open(path, "wb") as f:
        f.truncate(size_mib << 20)
    subprocess.run(["mkntfs", "-F", "-Q", "-q", "-L", "Test", str(path)], check=True, capture_output=True)
    return path


def _blob(n, salt=b""):
    return hashlib.shake_256(b"ntfs3g test %d" % n + salt).digest(n)


def _sha(b):
    return hashlib.sha256(b).hexdigest()


def _ntfscat(vol, path):
    return subprocess.run(["ntfscat", str(vol), path], check=True, capture_output=True).stdout


def _ntfsls(vol, path):
    out = subprocess.run(["ntfsls", "-p", path, str(vol)], check=True, capture_output=True, text=True).stdout
    return sorted(line.strip() for line in out.splitlines() if line.strip() not in ("", ".", ".."))


def _tsk_open(vol):
    import pytsk3

    return pytsk3.FS_Info(pytsk3.Img_Info(str(vol)))


@pytest.fixture
def vol_path(tmp_path):
    return _mkntfs(tmp_path / "vol.img")


def test_files_of_every_size_read_back_by_three_other_readers(vol_path):
    with NtfsVolume(vol_path) as v:
        v.mkdir("Windows\\System32\\drivers\\UMDF")  # nested, like mkdir -p
        for n in SIZES:
            assert v.write_file(f"Windows\\System32\\drivers\\f{n}.sys", _blob(n)) == n
    names = _ntfsls(vol_path, "/Windows/System32/drivers")
    assert names == sorted(["UMDF"] + [f"f{n}.sys" for n in SIZES])
    fs = _tsk_open(vol_path)
    for n in SIZES:
        assert _sha(_ntfscat(vol_path, f"/Windows/System32/drivers/f{n}.sys")) == _sha(_blob(n))
        f = fs.open(f"/Windows/System32/drivers/f{n}.sys")
        assert f.info.meta.size == n
        assert _sha(f.read_random(0, n) if n else b"") == _sha(_blob(n))
    # ntfs-3g decides residency: a 1-byte file stays in its MFT record, 1 MiB+1 cannot.
    rec_small = fs.open("/Windows/System32/drivers/f1.sys").info.meta.addr
    rec_big = fs.open(f"/Windows/System32/drivers/f{SIZES[-1]}.sys").info.meta.addr
    istat = lambda rec: subprocess.run(["istat", str(vol_path), str(rec)], check=True, capture_output=True, text=True).stdout
    assert "$DATA (128-2)   Name: N/A   Resident" in istat(rec_small)
    assert "$DATA (128-2)   Name: N/A   Non-Resident" in istat(rec_big)


def test_reads_its_own_writes_and_lists(vol_path):
    with NtfsVolume(vol_path) as v:
        for n in SIZES:
            v.write_file(f"a\\b\\f{n}", _blob(n))
        for n in SIZES:
            assert v.read_file(f"a/b/f{n}") == _blob(n)
            assert v.stat(f"a\\b\\f{n}").size == n
        entries = {e.name: e for e in v.listdir("a\\b")}
        assert set(entries) == {f"f{n}" for n in SIZES}
        assert not any(e.is_dir for e in entries.values())
        assert [e.name for e in v.listdir("")] == ["a"]  # no $MFT & co unless asked
        assert "$MFT" in [e.name for e in v.listdir("", include_system=True)]
        walked = dict(v.walk(""))
        assert set(walked) == {"", "a", "a\\b"}


def test_unicode_names_and_windows_case_rules(vol_path):
    name = "Ünïcödé ☃ 𝄞.txt"  # BMP and a surrogate pair
    with NtfsVolume(vol_path) as v:
        v.write_file(f"Windows\\{name}", b"snow")
        v.mkdir("windows\\SYSTEM32")  # case-insensitive: reuses "Windows", makes "SYSTEM32"
        assert [e.name for e in v.listdir("")] == ["Windows"]
        assert v.read_file(f"WINDOWS\\{name.upper()}") == b"snow"
        with pytest.raises(ntfs3g.NtfsExists):
            v.write_file(f"windows\\{name.lower()}", b"again")
    assert _ntfscat(vol_path, f"/Windows/{name}") == b"snow"
    assert _ntfsls(vol_path, "/Windows") == sorted(["SYSTEM32", name])
    with NtfsVolume(vol_path, case_sensitive=True) as v:  # hostile disks: names differing in case
        v.write_file("Windows\\A.TXT", b"upper")
        v.write_file("Windows\\a.txt", b"lower")
    assert _ntfscat(vol_path, "/Windows/A.TXT") == b"upper"
    assert _ntfscat(vol_path, "/Windows/a.txt") == b"lower"


def test_overwrite_grows_and_shrinks(vol_path):
    with NtfsVolume(vol_path) as v:
        v.write_file("f", _blob(700))
        v.overwrite("f", _blob(300000, b"big"))
    assert _ntfscat(vol_path, "/f") == _blob(300000, b"big")
    with NtfsVolume(vol_path) as v:
        v.overwrite("f", b"tiny")
        with pytest.raises(NotFound):
            v.overwrite("absent", b"x")
    assert _ntfscat(vol_path, "/f") == b"tiny"


def test_stream_input_and_times(vol_path):
    import io

    created = datetime(2018, 3, 27, 10, 0, 0, tzinfo=timezone.utc)
    with NtfsVolume(vol_path) as v:
        v.write_file("d\\s.bin", io.BytesIO(_blob(3 << 20)), times=(created, created, created))
        v.mkdir("d\\e")
        v.set_times("d\\e", created, created, created)
    assert _sha(_ntfscat(vol_path, "/d/s.bin")) == _sha(_blob(3 << 20))
    fs = _tsk_open(vol_path)
    for p in ("/d/s.bin", "/d/e"):
        meta = fs.open(p).info.meta
        assert meta.crtime == meta.mtime == int(created.timestamp())


def test_remove(vol_path):
    with NtfsVolume(vol_path) as v:
        v.write_file("x\\gone.cat", b"cat")
        v.remove("x\\gone.cat")
        assert not v.exists("x\\gone.cat")
        v.write_file("x\\gone.cat", b"back")  # the name cache forgot it
    assert _ntfsls(vol_path, "/x") == ["gone.cat"]
    assert _ntfscat(vol_path, "/x/gone.cat") == b"back"


def test_junction_and_symlink_are_reparse_points(vol_path):
    with NtfsVolume(vol_path) as v:
        v.create_junction("Documents and Settings", "C:\\Users")
        v.create_symlink("Windows\\escape.sys", "..\\..\\..\\etc\\passwd")
        tag, _ = v.read_reparse("Documents and Settings")
        assert tag == ntfs3g.IO_REPARSE_TAG_MOUNT_POINT
        assert v.stat("Documents and Settings").is_reparse
        assert {e.name: e.is_reparse for e in v.listdir("Windows")} == {"escape.sys": True}
    fs = _tsk_open(vol_path)
    for path, tag, target in (
        ("/Documents and Settings", ntfs3g.IO_REPARSE_TAG_MOUNT_POINT, "\\??\\C:\\Users"),
        ("/Windows/escape.sys", ntfs3g.IO_REPARSE_TAG_SYMLINK, "..\\..\\..\\etc\\passwd"),
    ):
        rec = fs.open(path).info.meta.addr
        # $REPARSE_POINT is attribute type 0xC0 = 192; icat reads it without our code.
        data = subprocess.run(["icat", str(vol_path), f"{rec}-192"], check=True, capture_output=True).stdout
        assert struct.unpack_from("<I", data)[0] == tag
        off, length = struct.unpack_from("<HH", data, 8)
        base = 16 if tag == ntfs3g.IO_REPARSE_TAG_MOUNT_POINT else 20
        assert data[base + off : base + off + length].decode("utf-16-le") == target


def test_non_ntfs_file_gives_a_typed_error(tmp_path):
    junk = tmp_path / "junk.img"
    junk.write_bytes(_blob(1 << 20))
    with pytest.raises(CorruptInput) as info:
        NtfsVolume(junk)
    assert isinstance(info.value, ntfs3g.NtfsError) and info.value.exit_code == 5
    assert "EINVAL" in str(info.value)
    empty = tmp_path / "empty.img"
    empty.write_bytes(b"")
    with pytest.raises(OfflineFixError):
        NtfsVolume(empty)
    with pytest.raises(NotFound):
        NtfsVolume(tmp_path / "absent.img")
    with pytest.raises(Unsupported):
        NtfsVolume(tmp_path)  # a folder is not a volume file


def test_errors_are_typed_and_the_volume_is_unmounted(vol_path):
    with pytest.raises(ntfs3g.NtfsExists):
        with NtfsVolume(vol_path) as v:
            v.write_file("a", b"1")
            v.write_file("a", b"2")
    with NtfsVolume(vol_path) as v:  # mounts again: the failed block unmounted cleanly
        assert v.read_file("a") == b"1"
        with pytest.raises(NotFound):
            v.read_file("nope\\x")
        with pytest.raises(NotFound):
            v.listdir("nope")
        with pytest.raises(Unsupported):
            v.write_file("n" * 256, b"")
        with pytest.raises(Unsupported):
            v.write_file("a\\..\\b", b"")
        with pytest.raises(ntfs3g.NtfsExists):
            v.mkdir("a\\sub")  # a file is in the way
        with pytest.raises(Unsupported):
            v.read_file("a", max_size=0)
        with pytest.raises(Unsupported):
            v.set_times("a", None, 5)
        with pytest.raises(Unsupported):
            v.set_times("a", "yesterday")
    with pytest.raises(Refused):
        v.read_file("a")  # closed
    with NtfsVolume(vol_path, readonly=True) as ro:
        with pytest.raises(Refused):
            ro.write_file("b", b"")
    subprocess.run(["ntfsfix", "-n", str(vol_path)], check=True, capture_output=True)


def test_volume_full_is_refused_and_volume_stays_sound(tmp_path):
    small = _mkntfs(tmp_path / "small.img", size_mib=8)
    with NtfsVolume(small) as v:
        with pytest.raises(ntfs3g.NtfsNoSpace) as info:
            v.write_file("big", _blob(16 << 20))
        assert info.value.exit_code == 7
        v.write_file("ok", b"still works")
    assert _ntfscat(small, "/ok") == b"still works"


def test_hibernated_volume_is_refused_read_write(vol_path):
    with NtfsVolume(vol_path) as v:
        v.write_file("hiberfil.sys", b"HIBR" + bytes(8188))
    with pytest.raises(ntfs3g.NtfsRefusedMount) as info:
        NtfsVolume(vol_path)
    assert info.value.exit_code == 7
    with NtfsVolume(vol_path, readonly=True) as v:
        assert v.read_file("hiberfil.sys")[:4] == b"HIBR"
    with NtfsVolume(vol_path, ignore_hibernation=True) as v:
        v.write_file("x", b"y")
