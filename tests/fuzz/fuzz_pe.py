"""Fuzz target: PE headers, the Authenticode image hash, the certificate table, and the embedded
PKCS#7 signature (parse, then verification against the seed's own root at a pinned time)."""

from __future__ import annotations

from datetime import datetime, timezone

from offline_fix.signing.pe import PeFile, pe_checksum
from offline_fix.signing.pkcs7 import parse_signed_data
from offline_fix.signing.verify import TrustStore, verify_signed_data
from tests.fuzz import seeds
from tests.fuzz.harness import Target, flag_split, launch

PINNED = datetime(2024, 1, 1, tzinfo=timezone.utc)
TRUST = TrustStore([seeds._ca().root], label="fuzz")  # the root that signed the seed


def one_input(data: bytes) -> None:
    flags, body = flag_split(data)
    with PeFile(body, "fuzz.sys") as pe:
        pe.digests(("sha1", "sha256"))
        for cert in pe.certificates():
            sd = parse_signed_data(cert.data, path="fuzz.sys")
            if flags & 1:
                verify_signed_data(sd, trust=TRUST, at=PINNED)
    if flags & 2:
        pe_checksum(body)


def make_seeds() -> list[bytes]:
    return [bytes([flag]) + pe for pe in seeds.pe_seeds() for flag in (3, 0)]


TARGET = Target("pe", one_input, make_seeds, max_len=1 << 17)

if __name__ == "__main__":
    launch(__spec__.name)
