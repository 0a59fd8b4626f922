"""offline_fix.hive.reader on real hives, checked against hivex (C) and python-registry.

Oracles: the key/value counts of ControlSet001\\Services come from issue 3 (and hivex agrees);
names, types, raw data, timestamps and key order come from hivex and python-registry, never from
our own output alone.
"""

from __future__ import annotations

import io
from datetime import timedelta, timezone

import pytest

from offline_fix.hive import Hive, Key, KeyNotFound, Value
from offline_fix.hive.reader import decode_data, fold_name

pytestmark = pytest.mark.realdata

hivex = pytest.importorskip("hivex", reason="python3-hivex not linked into the venv (run `make venv`)")
from Registry import Registry  # noqa: E402  (python-registry)

SERVICES = r"ControlSet001\Services"


@pytest.fixture(scope="module")
def system_path(realdata):
    return realdata("regipy/SYSTEM.xz")


@pytest.fixture(scope="module")
def system(system_path):
    return Hive.open(system_path)


def hivex_tree(path, start=""):
    """{path: (node timestamp, [(name, type, raw)...], [child names in order])} read by hivex."""
    h = hivex.Hivex(str(path))
    node = h.root()
    names = []
    for part in filter(None, start.split("\\")):
        node = h.node_get_child(node, part)
        names.append(h.node_name(node))  # as stored ("services" in this hive)
    start = "\\".join(names)
    out = {}
    stack = [(node, start)]
    while stack:
        node, path_ = stack.pop()
        children = h.node_children(node)
        names = [h.node_name(c) for c in children]
        values = [(h.value_key(v), *h.value_value(v)) for v in h.node_values(node)]
        out[path_] = (h.node_timestamp(node), values, names)
        for child, name in zip(children, names):
            stack.append((child, f"{path_}\\{name}" if path_ else name))
    return out


def our_tree(hive, start=""):
    return {
        key.path: (key.timestamp, [(v.name, v.type, v.raw) for v in key.values()],
                   [c.name for c in key.subkeys()])
        for key in hive.key(start).walk()
    }


# -- the issue's counts and the whole of Services against hivex ---------------------------------
def test_services_counts_from_the_issue(system):
    keys = values = 0
    for key in system.key(SERVICES).walk():
        keys += 1
        for value in key.values():
            values += 1
            value.data  # noqa: B018  decoded, as the benchmark does
    assert (keys, values) == (1765, 7886)


def test_services_equal_to_hivex(system, system_path):
    expected = hivex_tree(system_path, SERVICES)
    got = our_tree(system, SERVICES)
    assert len(expected) == 1765
    assert got == expected  # names, types, raw data, key timestamps, list order


def test_whole_system_hive_equal_to_hivex(system, system_path):
    expected = hivex_tree(system_path)
    got = our_tree(system)
    assert len(got) == 30756
    assert got == expected


def assert_same_time(ours, naive_utc):
    """python-registry converts FILETIME through a float (it may round up by 1 us); we truncate."""
    assert abs(ours - naive_utc.replace(tzinfo=timezone.utc)) <= timedelta(microseconds=1)


def assert_same_raw(value, pr_raw):
    """python-registry returns data kept inside the key value (4 bytes or less) as the whole
    4-byte field, or as b"" for some types; hivex, compared elsewhere, gives it exactly."""
    if value.size <= 4:
        assert pr_raw == b"" or pr_raw[: value.size] == value.raw
    else:
        assert value.raw == pr_raw


def _pr_values(key):
    return {("" if v.name() == "(default)" else v.name()).upper(): v for v in key.values()}


def assert_key_like_python_registry(key, pr_key) -> int:
    """Timestamp, value names, types, raw data (and decoded strings and numbers) of one key;
    returns the number of values compared."""
    assert_same_time(key.last_written, pr_key.timestamp())
    pv = _pr_values(pr_key)
    assert sorted(v.name.upper() for v in key.values()) == sorted(pv)
    for value in key.values():
        other = pv[value.name.upper()]
        assert value.type == other.value_type()
        assert_same_raw(value, other.raw_data())
        if value.type in (1, 2, 4, 11):
            assert value.data == other.value()
    return len(pv)


def test_services_equal_to_python_registry(system, system_path):
    reg = Registry.Registry(str(system_path))
    theirs = reg.open(SERVICES)
    stack = [(system.key(SERVICES), theirs)]
    checked = 0
    while stack:
        ours, pr = stack.pop()
        assert ours.name == pr.name()
        checked += assert_key_like_python_registry(ours, pr)
        pairs = {k.name().upper(): k for k in pr.subkeys()}
        ours_children = list(ours.subkeys())
        assert sorted(c.name.upper() for c in ours_children) == sorted(pairs)
        stack.extend((c, pairs[c.name.upper()]) for c in ours_children)
    assert checked == 7886


# -- lookups ----------------------------------------------------------------------------------------
def test_lookup_is_case_insensitive(system, system_path):
    tcpip = system.key(r"controlset001\SERVICES\tcpip")
    assert tcpip.name == "Tcpip"
    assert tcpip.path == r"ControlSet001\services\Tcpip"  # names as stored
    assert system.key("\\ControlSet001\\Services\\Tcpip\\").offset == tcpip.offset
    assert tcpip.value("START").name == "Start"
    start = Registry.Registry(str(system_path)).open(r"ControlSet001\Services\Tcpip").value("Start").value()
    assert tcpip.get("start") == tcpip.get("Start") == start


def test_key_not_found_names_the_missing_part(system):
    with pytest.raises(KeyNotFound) as info:
        system.key(r"ControlSet001\Services\NoSuchDriver\Parameters")
    assert "NoSuchDriver" in str(info.value)
    assert info.value.exit_code == 3
    assert system.find_key(r"ControlSet001\NoSuch") is None
    assert system.key(SERVICES).get("NoSuchValue", "dflt") == "dflt"


def test_select_values_from_manifest(system):
    select = system.key("Select")
    assert (select.get("Current"), select.get("LastKnownGood")) == (1, 2)  # MANIFEST: Current=1 LKG=2
    assert system.key(r"ControlSet001\Control\CrashControl").get("CrashDumpEnabled") == 2
    assert not system.dirty
    assert system.base_block.sequence1 == system.base_block.sequence2 == 13983


def test_root_and_key_attributes(system):
    root = system.root
    assert isinstance(root, Key) and root.path == "" and root.parent is None
    names = [k.name for k in root.subkeys()]
    assert "ControlSet001" in names and "Select" in names
    key = system.key(SERVICES)
    assert key.subkey_count == len(list(key.subkeys())) == 467  # MANIFEST: 467 service keys
    assert key.last_written.tzinfo is not None
    values = list(system.key(r"ControlSet001\Services\Tcpip").values())
    assert all(isinstance(v, Value) for v in values)


def test_class_names_equal_python_registry(system, system_path):
    reg = Registry.Registry(str(system_path))
    found = 0
    for name in ("JD", "Skew1", "GBG", "Data"):  # the LSA boot-key parts carry class names
        ours = system.key(rf"ControlSet001\Control\Lsa\{name}")
        nk = reg.open(rf"ControlSet001\Control\Lsa\{name}")._nkrecord
        if nk.has_classname():
            assert ours.class_name == nk.classname()
            found += 1
    assert found == 4
    assert system.key(SERVICES).class_name is None


def test_fast_path_equals_reference_parser(system):
    """Key.values() inlines Value.__init__; both must give the same answer."""
    for key in system.key(SERVICES).walk():
        for value in key.values():
            ref = Value(system, value.offset)
            assert (ref.name, ref.type, ref.size, ref.raw, ref.data) == (
                value.name, value.type, value.size, value.raw, value.data)


# -- the yarp sample hives, against python-registry ------------------------------------------------
def _pr_walk(key, path=""):
    yield path, key
    for child in key.subkeys():
        yield from _pr_walk(child, f"{path}\\{child.name()}" if path else child.name())


YARP_SAMPLES = ["BigDataHive", "MultiSzHive", "UnicodeHive", "ExtendedASCIIHive", "ManySubkeysHive",
                "EmptyHive", "OldDirtyHive/RecoveredHive_Windows7", "NewDirtyHive1/RecoveredHive_Windows10"]


@pytest.mark.parametrize("name", YARP_SAMPLES)
def test_yarp_samples_equal_hivex(realdata, name):
    path = realdata(f"yarp/{name}")
    assert our_tree(Hive.open(path)) == hivex_tree(path)


@pytest.mark.parametrize("name", YARP_SAMPLES)
def test_yarp_samples_equal_python_registry(realdata, name):
    path = realdata(f"yarp/{name}")
    ours = {k.path: k for k in Hive.open(path).root.walk()}
    reg = Registry.Registry(str(path))
    theirs = dict(_pr_walk(reg.root()))
    assert sorted(ours) == sorted(theirs)
    for path_, pr_key in theirs.items():
        assert_key_like_python_registry(ours[path_], pr_key)


def test_big_data_values(realdata):
    hive = Hive.open(realdata("yarp/BigDataHive"))
    assert hive.minor > 3
    values = [v for k in hive.root.walk() for v in k.values()]
    big = [v for v in values if v.size > 16344]
    assert big, "BigDataHive holds values over 16344 bytes"
    x = hivex.Hivex(str(realdata("yarp/BigDataHive")))
    hx = {x.value_key(v): x.value_value(v)[1] for n in _hivex_nodes(x) for v in x.node_values(n)}
    for value in big:
        assert value.raw == hx[value.name]
        assert len(value.raw) == value.size


def _hivex_nodes(x):
    stack = [x.root()]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(x.node_children(node))


def test_multi_sz_decoded_like_python_registry(realdata):
    path = realdata("yarp/MultiSzHive")
    reg = Registry.Registry(str(path))
    theirs = {v.name(): v.value() for _p, k in _pr_walk(reg.root()) for v in k.values()}
    ours = {v.name: v.data for k in Hive.open(path).root.walk() for v in k.values()}
    assert ours.keys() == theirs.keys()
    for name, data in ours.items():
        assert isinstance(data, list)
        assert [s for s in data if s] == [s for s in theirs[name] if s]


def test_unicode_names(realdata):
    hive = Hive.open(realdata("yarp/UnicodeHive"))
    names = [k.name for k in hive.root.walk()][1:]
    assert any(not n.isascii() for n in names)
    for key in list(hive.root.walk())[1:]:
        assert key.parent.subkey(key.name.upper()).offset == key.offset
        assert key.parent.subkey(key.name.lower()).offset == key.offset
        assert hive.key(key.path.upper()).offset == key.offset


# -- sources, writable copies, decoding ------------------------------------------------------------
def test_sources(realdata):
    path = realdata("yarp/MultiSzHive")
    data = path.read_bytes()
    for source in (path, str(path), data, bytearray(data), memoryview(data), io.BytesIO(data)):
        hive = Hive.open(source)
        assert [k.name for k in hive.root.walk()] == [k.name for k in Hive.open(data).root.walk()]
        assert not hive.writable


def test_writable_copy_and_invalidate(realdata):
    path = realdata("yarp/MultiSzHive")
    data = path.read_bytes()
    source = bytearray(data)
    hive = Hive.open(source, writable=True)
    assert hive.writable and isinstance(hive.buf, bytearray) and hive.buf is not source
    value = next(v for k in hive.root.walk() for v in k.values())
    at = value._where
    hive.buf[at:at + 2] = b"Z\x00"  # change the first UTF-16 character in place
    hive.invalidate()
    again = next(v for k in hive.root.walk() for v in k.values())
    assert again.data[0].startswith("Z")
    assert source == bytearray(data)  # the caller's buffer is untouched
    hive.buf = bytearray(data)  # assigning re-reads everything
    assert next(v for k in hive.root.walk() for v in k.values()).data == value.data


@pytest.mark.parametrize(("typ", "raw", "expected"), [
    (1, "abc\x00junk".encode("utf-16-le"), "abc"),
    (2, "%SystemRoot%\\x".encode("utf-16-le"), "%SystemRoot%\\x"),
    (1, b"a\x00b", "a"),  # odd length: the last byte is left out
    (4, (7).to_bytes(4, "little"), 7),
    (4, b"\x01\x02\x03", b"\x01\x02\x03"),  # a DWORD of the wrong size stays bytes
    (5, (7).to_bytes(4, "big"), 7),
    (11, (2**40).to_bytes(8, "little"), 2**40),
    (7, "a\x00b\x00\x00".encode("utf-16-le"), ["a", "b"]),
    (7, "a\x00\x00b\x00\x00".encode("utf-16-le"), ["a", "", "b"]),
    (7, b"", []),
    (3, b"\x00\x01", b"\x00\x01"),
    (0x1234, b"\xff", b"\xff"),
])
def test_decode_data(typ, raw, expected):
    assert decode_data(typ, raw) == expected


def test_fold_name_keeps_length():
    assert fold_name("straße") == "STRAßE"
    assert fold_name("tcpip") == "TCPIP"
