"""Random sequences of writes (offline_fix/hive/writer.py) against a dictionary model.

Each example starts from a new hive (minor 3 or 5) or from yarp's EmptyHive (written by Windows),
runs random set / add / delete of keys and values (random names, non-ASCII included, random
types and sizes, big data included), commits at random points, and then checks the file with
hivex (C), python-registry and our own reader against the model, the reported byte ranges
against the bytes, and the cells for leaks.
"""

from __future__ import annotations

import os
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from offline_fix.hive import Hive, KeyNotFound
from offline_fix.hive.reader import fold_name
from offline_fix.hive.structures import (
    REG_BINARY,
    REG_DWORD,
    REG_EXPAND_SZ,
    REG_MULTI_SZ,
    REG_NONE,
    REG_QWORD,
    REG_SZ,
)
from offline_fix.hive.writer import HiveWriter, ValueNotFound, WriteRefused, encode_data, new_hive
from test_hive_writer import check_commit, leaked_cells, sort_key, walk_hivex, walk_pyreg

pytest.importorskip("hivex")

NAME_CHARS = st.characters(blacklist_characters="\\\x00", blacklist_categories=("Cs",))
POOL = ["a", "A", "Ключ", "ключ", "straße", "ß", "Z9", "ÿ", "𝄞 clef"]
key_names = st.one_of(st.sampled_from(POOL), st.text(NAME_CHARS, min_size=1, max_size=12))
value_names = st.one_of(st.sampled_from(POOL + [""]), st.text(NAME_CHARS, max_size=12))
strings = st.text(NAME_CHARS, max_size=20)
SIZES = [0, 1, 3, 4, 5, 8, 100, 4000, 16344, 16345, 40000]
blobs = st.builds(lambda n, seed: random.Random(seed).randbytes(n), st.sampled_from(SIZES), st.integers(0, 1000))
typed_data = st.one_of(
    st.tuples(st.sampled_from([REG_SZ, REG_EXPAND_SZ]), strings),
    st.tuples(st.just(REG_MULTI_SZ), st.lists(st.text(NAME_CHARS, min_size=1, max_size=8), max_size=4)),
    st.tuples(st.just(REG_DWORD), st.integers(0, 2**32 - 1)),
    st.tuples(st.just(REG_QWORD), st.integers(0, 2**64 - 1)),
    st.tuples(st.sampled_from([REG_BINARY, REG_NONE, 0x20]), blobs),
)


class Model:
    """{folded key path: {"name": stored name, "values": {folded name: (name, type, raw)}}}."""

    def __init__(self) -> None:
        self.keys: dict[tuple[str, ...], dict] = {(): {"name": "", "values": {}}}

    def create(self, parts: list[str]) -> None:
        at: tuple[str, ...] = ()
        for part in parts:
            at = at + (fold_name(part),)
            self.keys.setdefault(at, {"name": part, "values": {}})

    def children(self, at: tuple[str, ...]) -> list[tuple[str, ...]]:
        return [k for k in self.keys if len(k) == len(at) + 1 and k[:len(at)] == at]

    def delete(self, at: tuple[str, ...]) -> None:
        for k in [k for k in self.keys if k[:len(at)] == at]:
            del self.keys[k]

    def path(self, at: tuple[str, ...]) -> str:
        return "\\".join(self.keys[at[:i + 1]]["name"] for i in range(len(at)))

    def expected(self) -> dict[str, dict]:
        """The model as the walkers report a hive: {path: {"values": {name: (type, raw)}, "subkeys"}}."""
        out = {}
        for at, info in self.keys.items():
            out[self.path(at)] = {
                "values": {name: (typ, raw) for name, typ, raw in info["values"].values()},
                "subkeys": sorted((self.keys[c]["name"] for c in self.children(at)), key=sort_key),
            }
        return out


def _c1(text: str) -> bool:
    return any("\x80" <= ch <= "\x9f" for ch in text)


def _start(kind: str, realdata) -> Hive:
    if kind == "EmptyHive":
        return Hive.open(realdata("yarp/EmptyHive"), writable=True)
    return new_hive("ROOT", minor=3 if kind == "new3" else 5)


@settings(max_examples=int(os.environ.get("HIVE_PROPERTY_EXAMPLES", "200")), deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(kind=st.sampled_from(["new5", "new3", "EmptyHive"]), data=st.data())
def test_random_writes_match_a_dict_model(realdata, tmp_path_factory, kind, data) -> None:
    hive = _start(kind, realdata)
    original = bytes(hive.buf)
    leaks_before = leaked_cells(original)
    w = HiveWriter(hive, clock=lambda: 133_000_000_000_000_000)
    model = Model()
    committed = original
    for _ in range(data.draw(st.integers(1, 20), label="steps")):
        op = data.draw(st.sampled_from(["create", "create", "set", "set", "set", "del_value", "del_key", "commit"]))
        keys = sorted(model.keys)
        if op == "create":
            base = data.draw(st.sampled_from(keys), label="under")
            parts = data.draw(st.lists(key_names, min_size=1, max_size=3), label="names")
            w.create_key("\\".join([model.path(base)] + parts) if base else "\\".join(parts))
            model.create([model.keys[base[:i + 1]]["name"] for i in range(len(base))] + parts)
        elif op == "set":
            at = data.draw(st.sampled_from(keys), label="key")
            name = data.draw(value_names, label="value")
            type_, value = data.draw(typed_data, label="data")
            w.set_value(model.path(at), name, type_, value)
            old = model.keys[at]["values"].get(fold_name(name))
            model.keys[at]["values"][fold_name(name)] = (old[0] if old else name, type_, encode_data(type_, value))
        elif op == "del_value":
            at = data.draw(st.sampled_from(keys), label="key")
            names = sorted(n for n, _t, _r in model.keys[at]["values"].values())
            name = data.draw(st.sampled_from(names) if names else value_names, label="value")
            if fold_name(name) in model.keys[at]["values"]:
                w.delete_value(model.path(at), name)
                del model.keys[at]["values"][fold_name(name)]
            else:
                with pytest.raises(ValueNotFound):
                    w.delete_value(model.path(at), name)
        elif op == "del_key" and len(keys) > 1:
            at = data.draw(st.sampled_from(keys[1:]), label="key")
            recursive = data.draw(st.booleans(), label="recursive")
            if model.children(at) and not recursive:
                with pytest.raises(WriteRefused):
                    w.delete_key(model.path(at), recursive=recursive)
            else:
                w.delete_key(model.path(at), recursive=recursive)
                model.delete(at)
                with pytest.raises(KeyNotFound):
                    w.set_value(model.path(at[:-1]) + "\\" + at[-1] if len(at) > 1 else at[-1], "x", REG_DWORD, 1)
        elif op == "commit":
            commit = w.commit()
            if commit.ranges:
                check_commit(committed, bytes(hive.buf), commit)
            committed = bytes(hive.buf)
    w.commit()
    new = bytes(hive.buf)

    want = model.expected()
    out = tmp_path_factory.mktemp("prop") / "hive"
    out.write_bytes(new)
    assert walk_hivex(out) == want
    ours = Hive.open(new)
    assert {k.path: {"values": {v.name: (v.type, v.raw) for v in k.values()},
                     "subkeys": [s.name for s in k.subkeys()]} for k in ours.root.walk()} == want
    # python-registry decodes one-byte ("compressed") names as cp1252 (and fails on its undefined
    # bytes), Windows as Latin-1: it only checks models without a character in 0x80..0x9F
    if not any(_c1(path) or any(_c1(n) for n in info["values"]) for path, info in want.items()):
        pyreg = walk_pyreg(out)
        assert sorted(pyreg) == sorted(want)
        for path, info in want.items():
            got = pyreg[path]["values"]
            assert sorted(got) == sorted(info["values"])
            for name, (typ, raw) in info["values"].items():
                if len(raw) > 4 and typ < 0x1000:  # python-registry mangles data kept in the vk
                    assert got[name] == (typ, raw)
    assert leaked_cells(new) <= leaks_before
