"""Registry changes on a Windows install, as Change objects for the write engine.

A hive is read from the install, recovered from its transaction logs first when it is dirty (the
replay becomes part of the same journaled change, so undo puts the dirty original back), edited
with our writer, and checked after writing by python-registry, a parser we did not write: the
values asked for read as intended, and every other key and value reads as before.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

from offline_fix.changes.engine import Change, FilePatch, Range
from offline_fix.errors import NotFound
from offline_fix.hive import Hive
from offline_fix.hive.baseblock import BASE_BLOCK_SIZE, BaseBlock, in_progress
from offline_fix.hive.writer import HiveWriter

MAX_HIVE = 512 * 1024 * 1024
PAGE = 4096


@dataclass
class Edit:
    """One registry operation, in hive-relative terms (no HKLM\\SYSTEM prefix)."""

    op: str  # set, delete-value, create-key, delete-key
    key: str
    name: str | None = None
    type: int | None = None
    data: object = None
    old: object = None  # for the report: the value before (decoded), or None
    old_type: int | None = None

    def describe(self, hive_name: str) -> dict:
        """JSON-ready: bytes become {"hex": ...} so that the journal can hold any value type."""
        d = {"op": self.op, "hive": hive_name, "key": self.key}
        if self.name is not None:
            d["value"] = self.name
        if self.op == "set":
            from offline_fix.hive.structures import type_name

            d.update(type=type_name(self.type), new=_jsonable(self.data), old=_jsonable(self.old),
                     old_type=type_name(self.old_type) if self.old_type is not None else None)
        elif self.op == "delete-value":
            d["old"] = _jsonable(self.old)
        return d


def _jsonable(data):
    return {"hex": data.hex()} if isinstance(data, (bytes, bytearray)) else data


@dataclass
class HiveEditPlan:
    hive_path: str  # on the volume
    hive_name: str
    edits: list[Edit] = field(default_factory=list)
    recovery: dict | None = None


def read_hive_for_edit(fs, hive_path: str) -> tuple[bytes, bytes, dict | None]:
    """(bytes on disk, bytes to edit, recovery report). A dirty hive is recovered from its logs;
    when they cannot be replayed safely the hive.log module raises and nothing is written."""
    from offline_fix.hive.log import recover

    original = fs.read_bytes(hive_path, MAX_HIVE)
    block = BaseBlock.parse(original[:BASE_BLOCK_SIZE])
    if not block.dirty:
        return original, original, None
    folder, _, name = hive_path.rpartition("\\")
    logs = []
    for suffix in (".LOG1", ".LOG2", ".LOG"):
        try:
            path = fs.resolve(f"{folder}\\{name}{suffix}" if folder else f"{name}{suffix}")
        except NotFound:
            continue
        data = fs.read_bytes(path, MAX_HIVE)
        if data:
            logs.append((path.rpartition("\\")[2], data))
    recovery = recover(original, logs)
    return original, recovery.data, recovery.to_dict()


def diff_ranges(before: bytes, after: bytes) -> list[Range]:
    """Exact changed runs between two equally long byte strings, page by page."""
    ranges = []
    mv_a, mv_b = memoryview(before), memoryview(after)
    for page in range(0, len(after), PAGE):
        a, b = mv_a[page:page + PAGE], mv_b[page:page + PAGE]
        if a == b:
            continue
        i = 0
        n = len(b)
        while i < n:
            if a[i] == b[i]:
                i += 1
                continue
            j = i
            while j < n and a[j] != b[j]:
                j += 1
            ranges.append(Range(page + i, bytes(a[i:j]), bytes(b[i:j])))
            i = j
    merged: list[Range] = []
    for r in ranges:  # join runs separated by a few equal bytes: fewer, still exact, ranges
        if merged and r.offset - (merged[-1].offset + len(merged[-1].new)) <= 8:
            last = merged[-1]
            gap = slice(last.offset + len(last.new), r.offset)
            merged[-1] = Range(last.offset, last.old + before[gap] + r.old, last.new + after[gap] + r.new)
        else:
            merged.append(r)
    return merged


def hive_stages(before: bytes, after: bytes) -> list[list[Range]]:
    """Windows' write order: first the base block marked "write in progress" (baseblock.in_progress:
    the hive reads as dirty until the end), then the hive bins, then the final base block."""
    if len(before) != len(after):
        whole = [Range(0, before, after)]
        return [whole]
    ranges = diff_ranges(before, after)
    head = [r for r in ranges if r.offset < BASE_BLOCK_SIZE]
    body = [r for r in ranges if r.offset >= BASE_BLOCK_SIZE]
    if not head or not body:
        return [ranges]
    marker = in_progress(BaseBlock.parse(before[:BASE_BLOCK_SIZE]), BaseBlock.parse(after[:BASE_BLOCK_SIZE])).to_bytes()
    stage1 = diff_ranges(before[:BASE_BLOCK_SIZE], marker)
    stage3 = diff_ranges(marker, after[:BASE_BLOCK_SIZE])
    # Undo writes stages back in reverse: old bytes of stage 3 are the marker's; make them the
    # original's so that every range's "old" is what the file held before the change.
    stage3 = [Range(r.offset, before[r.offset:r.offset + len(r.new)], r.new) for r in stage3]
    return [stage1, body, stage3]


def build_hive_change(fs, plan: HiveEditPlan, *, kind: str, summary: str, apply_edits) -> Change:
    """``apply_edits(writer, hive)`` performs the edits and fills ``plan.edits`` (with old values)."""
    original, base, recovery = read_hive_for_edit(fs, plan.hive_path)
    plan.recovery = recovery
    hive = Hive.open(bytearray(base), writable=True)
    hive.path = plan.hive_path
    check_structure(hive)
    writer = HiveWriter(hive)
    apply_edits(writer, hive)
    writer.commit()
    after = bytes(hive.buf)
    details = [e.describe(plan.hive_name) for e in plan.edits]
    if recovery:
        details.insert(0, {"op": "recover", "hive": plan.hive_name, **recovery})
    if after == original:
        return Change(kind, summary, details, [])
    patch = FilePatch(plan.hive_path, original, after, hive_stages(original, after))
    edits = list(plan.edits)

    def check(files: dict[str, bytes]) -> list[str]:
        return check_hive_independently(base, files[plan.hive_path], edits)

    return Change(kind, summary, details, [patch], check)


def check_structure(hive: Hive) -> None:
    """Read every key and value strictly before a write: a hive whose subkey lists form a cycle,
    share keys or hold a damaged cell is refused here (CellError ...), before anything is
    written, instead of surprising the writer or the independent check after the write."""
    for key in hive.root.walk():  # strict: a key node met twice raises, so the walk ends
        key.values()


# -- the independent check: python-registry --------------------------------------------------------

class _Cycle(Exception):
    pass


def _walk(data: bytes) -> dict[str, dict]:
    from Registry import Registry

    reg = Registry.Registry(io.BytesIO(data))
    out: dict[str, dict] = {}
    stack = [(reg.root(), "")]
    seen: set[int] = set()  # python-registry follows subkey lists blindly: never visit a key twice
    while stack:
        key, path = stack.pop()
        offset = key._nkrecord.offset()
        if offset in seen:
            raise _Cycle(f"key node {offset:#x} is reached twice (at {path or '(root)'}): the subkey lists form a cycle")
        seen.add(offset)
        values = {}
        for v in key.values():
            values[v.name().upper()] = (v.value_type(), v.raw_data())
        out[path.upper()] = values
        for sub in key.subkeys():
            stack.append((sub, f"{path}\\{sub.name()}" if path else sub.name()))
    return out


def check_hive_independently(before: bytes, after: bytes, edits: list[Edit]) -> list[str]:
    from offline_fix.hive.writer import encode_data

    problems = []
    try:
        old, new = _walk(before), _walk(after)
    except Exception as exc:  # python-registry raises its own assorted errors
        return [f"python-registry cannot read the hive back: {type(exc).__name__}: {exc}"]
    touched_values: dict[str, set[str]] = {}
    created, deleted = set(), set()
    for e in edits:
        key = e.key.strip("\\").upper()
        if e.op == "set":
            want = encode_data(e.type, e.data) if not isinstance(e.data, bytes) else e.data
            got = new.get(key, {}).get((e.name or "").upper())
            if got is None:
                problems.append(f"{e.key}\\{e.name}: missing after writing")
            elif got[0] != e.type or got[1] != want:
                problems.append(f"{e.key}\\{e.name}: reads type {got[0]} data {got[1][:16].hex()} after writing")
            touched_values.setdefault(key, set()).add((e.name or "").upper())
        elif e.op == "delete-value":
            if (e.name or "").upper() in new.get(key, {}):
                problems.append(f"{e.key}\\{e.name}: still present after deleting")
            touched_values.setdefault(key, set()).add((e.name or "").upper())
        elif e.op == "create-key":
            if key not in new:
                problems.append(f"{e.key}: missing after creating")
            created.add(key)
        elif e.op == "delete-key":
            if key in new:
                problems.append(f"{e.key}: still present after deleting")
            deleted.add(key)

    def under(path: str, roots: set[str]) -> bool:
        return any(path == r or path.startswith(r + "\\") for r in roots)

    for path in old.keys() | new.keys():
        if under(path, created) or under(path, deleted):
            continue
        if path not in new or path not in old:
            problems.append(f"key {path or '(root)'} {'vanished' if path not in new else 'appeared'} unexpectedly")
            continue
        skip = touched_values.get(path, set())
        a = {k: v for k, v in old[path].items() if k not in skip}
        b = {k: v for k, v in new[path].items() if k not in skip}
        if a != b:
            diff = sorted(set(a.items()) ^ set(b.items()))[:1]
            problems.append(f"key {path}: values changed that were not asked for ({diff[0][0] if diff else '?'})")
        if len(problems) > 20:
            break
    return problems
