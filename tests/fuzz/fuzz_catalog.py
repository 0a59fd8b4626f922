"""Fuzz target: catalog (.cat) parsing, the fast DER walker and the full PKCS#7 parse."""

from __future__ import annotations

from offline_fix.signing.catalog import parse_catalog
from offline_fix.signing.pkcs7 import parse_signed_data
from tests.fuzz import seeds
from tests.fuzz.harness import Target, flag_split, launch


def one_input(data: bytes) -> None:
    flags, body = flag_split(data)
    catalog = parse_catalog(body, path="fuzz.cat", details=bool(flags & 1))
    catalog.index_digests()
    for member in catalog.members:
        member.to_dict()
    if flags & 2:
        parse_signed_data(body, path="fuzz.cat")


def make_seeds() -> list[bytes]:
    return [bytes([flag]) + cat for cat in seeds.catalog_seeds() for flag in (3, 0)]


TARGET = Target("catalog", one_input, make_seeds)

if __name__ == "__main__":
    launch(__spec__.name)
