"""The ``diagnose --report`` page (offline_fix/report/html.py). The oracle is a real browser:
Debian's headless Chromium renders the page (a screenshot that is not blank, decoded here with
zlib from the PNG specification, RFC 2083) and dumps its DOM (the suspects table and the first
suspect are there). Skipped locally when chromium is missing; failing under CI=true."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import struct
import subprocess
import zlib

import pytest

from images import demo
from offline_fix.cli import main
from offline_fix.report.html import render

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def doc(tmp_path_factory):
    """The --json document of the demo disk (the same one --report renders)."""
    out = tmp_path_factory.mktemp("demo")
    image = demo.build_demo(out, log=lambda _m: None)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["diagnose", str(image), "--json", "--backup-dir", str(out / "state")]) == 1
    return json.loads(buf.getvalue())


def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    message = "chromium is not installed (Debian package: chromium)"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def browse(tmp_path, page, *args) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile-{len(list(tmp_path.iterdir()))}"
    return subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, page.as_uri()],
                          capture_output=True, timeout=120)


def png_pixels(data: bytes) -> tuple[int, int, int, bytes]:
    """(width, height, bytes per pixel, unfiltered pixel rows) of an 8-bit RGB/RGBA PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    at, idat, header = 8, b"", None
    while at < len(data):
        length, kind = struct.unpack(">I4s", data[at:at + 8])
        body = data[at + 8:at + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        at += 12 + length
    width, height, depth, colour, _, _, interlace = header
    assert depth == 8 and colour in (2, 6) and interlace == 0
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows, prev = bytearray(), bytearray(stride)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):  # filters of the PNG specification, section 6
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + a) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + b) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        rows += line
        prev = line
    return width, height, bpp, bytes(rows)


def test_page_in_headless_chromium(doc, tmp_path):
    page = tmp_path / "report.html"
    page.write_text(render(doc), encoding="utf-8")
    shot = tmp_path / "shot.png"
    proc = browse(tmp_path, page, "--window-size=1000,900", f"--screenshot={shot}")
    assert shot.is_file(), proc.stderr.decode(errors="replace")[-500:]
    width, height, bpp, pixels = png_pixels(shot.read_bytes())
    assert (width, height) == (1000, 900)
    grey = pixels[::bpp * 7]  # the red channel of every 7th pixel
    mean = sum(grey) / len(grey)
    variance = sum((v - mean) ** 2 for v in grey) / len(grey)
    assert variance > 500, f"the screenshot is (nearly) blank: variance {variance:.0f}"
    assert len(set(zip(pixels[0::bpp * 5], pixels[1::bpp * 5], pixels[2::bpp * 5]))) > 20  # more than a few colours

    dom = browse(tmp_path, page, "--dump-dom").stdout.decode("utf-8")
    table = re.search(r'<table id="suspects">(.*?)</table>', dom, re.S)
    assert table, "no suspects table in the DOM"
    first_row = re.search(r"<tbody><tr>(.*?)</tr>", table.group(1), re.S).group(1)
    assert "<b>acmedisk</b>" in first_row  # the demo's culprit, first
    assert "<svg" in dom and dom.count("<rect") >= 2  # the timeline chart, with the crash mark


def test_self_contained():
    page = render({"target": "x", "suspects": [], "timeline": {"entries": []}})
    without_ns = page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    for pattern in (r"<script", r"<link", r"@import", r"url\(", r"\bsrc\s*=", r"https?://", r"<iframe", r"<img"):
        assert not re.search(pattern, without_ns, re.I), pattern
    assert 'id="suspects"' in page and "nothing suspicious found" in page


def test_hostile_text_is_escaped(doc):
    hostile = '<img src=x onerror="alert(1)">'
    bad = json.loads(json.dumps(doc))
    bad["suspects"][0]["name"] = hostile
    bad["suspects"][0]["evidence"][0]["text"] = "</td></tr></table><script>alert(2)</script>"
    bad["timeline"]["entries"][0]["summary"] = "<svg onload=alert(3)>"
    page = render(bad)
    assert hostile not in page and "<script>" not in page and "<svg onload" not in page
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in page


def test_long_history_chart_is_bounded(doc):
    bad = json.loads(json.dumps(doc))
    entries = [{"time": f"20{10 + i % 14:02d}-0{1 + i % 9}-1{i % 10}T00:00:00Z", "kind": "boot", "source": "s",
                "summary": "boot", "subject": None} for i in range(3000)]
    bad["timeline"]["entries"] = sorted(entries, key=lambda e: e["time"])
    page = render(bad)
    assert "earlier entries are not drawn" in page and "older entries are in the --json output" in page
