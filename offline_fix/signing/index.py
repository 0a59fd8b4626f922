"""A catalog index: digest -> (catalog, algorithm), built once per run and cached on disk.

``build_index`` reads each catalog once (catalog.py's DER walker, no signature work) and maps
every member digest to the catalogs listing it. The result is cached as JSON in a state folder,
keyed per catalog by (path, size, mtime_ns): a second run re-parses only catalogs that changed,
appeared or were replaced. A cache that cannot be read is rebuilt and the reason is recorded in
``stats["cache"]`` (never silently reused).

Catalog signatures are verified lazily (``CatalogIndex.verify``), only for catalogs that a
lookup actually hit, and memoized per (catalog, trust store, time) for the run.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Callable, Iterable, Union

from offline_fix.errors import NotFound, PermissionDenied
from offline_fix.signing.catalog import CatalogError, parse_catalog

if TYPE_CHECKING:
    from offline_fix.signing.verify import SignatureResult, TrustStore

CACHE_VERSION = 1
MAX_CATALOG_SIZE = 256 << 20

STATUS_OK = "ok"
STATUS_UNSIGNED = "unsigned"
STATUS_EMPTY = "empty"
STATUS_UNPARSABLE = "unparsable"


@dataclass(frozen=True)
class CatalogSource:
    """A catalog to index: a name, a stable key (its path), size, mtime and a way to read it."""

    name: str
    key: str
    size: int
    mtime_ns: int
    read: Callable[[], bytes] = field(compare=False, repr=False)

    @classmethod
    def from_path(cls, path: Union[str, os.PathLike]) -> "CatalogSource":
        path = os.fspath(path)
        try:
            st = os.stat(path)
        except FileNotFoundError as e:
            raise NotFound("catalog not found", path=path) from e
        except PermissionError as e:
            raise PermissionDenied("cannot stat catalog", path=path) from e
        return cls(os.path.basename(path), path, st.st_size, st.st_mtime_ns, _reader(path))


def _reader(path: str) -> Callable[[], bytes]:
    def read() -> bytes:
        with open(path, "rb") as f:
            data = f.read()  # callers check the stat size against MAX_CATALOG_SIZE first
        if len(data) > MAX_CATALOG_SIZE:
            raise OSError(27, f"catalog larger than {MAX_CATALOG_SIZE} bytes")
        return data
    return read


def catalog_sources(directory: Union[str, os.PathLike]) -> list[CatalogSource]:
    """Every ``*.cat`` file (any case) directly inside ``directory``, sorted by name."""
    directory = os.fspath(directory)
    out = []
    try:
        with os.scandir(directory) as it:
            for entry in it:
                if entry.name.lower().endswith(".cat") and entry.is_file(follow_symlinks=False):
                    st = entry.stat(follow_symlinks=False)
                    out.append(CatalogSource(entry.name, entry.path, st.st_size, st.st_mtime_ns,
                                             _reader(entry.path)))
    except FileNotFoundError as e:
        raise NotFound("catalog folder not found", path=directory) from e
    except PermissionError as e:
        raise PermissionDenied("cannot list catalog folder", path=directory) from e
    out.sort(key=lambda s: s.name.lower())
    return out


@dataclass
class CatalogEntry:
    name: str
    key: str
    size: int
    mtime_ns: int
    status: str                      # ok, unsigned, empty, unparsable
    error: str | None = None
    member_count: int = 0
    member_list_type: str | None = None
    digests: list[tuple[str, bytes]] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"name": self.name, "size": self.size, "mtime_ns": self.mtime_ns, "status": self.status,
                "error": self.error, "members": self.member_count, "type": self.member_list_type,
                "digests": [[alg, d.hex()] for alg, d in self.digests]}

    @classmethod
    def from_json(cls, key: str, d: dict) -> "CatalogEntry":
        return cls(d["name"], key, int(d["size"]), int(d["mtime_ns"]), str(d["status"]), d["error"],
                   int(d["members"]), d["type"], [(str(a), bytes.fromhex(h)) for a, h in d["digests"]])


@dataclass(frozen=True)
class Hit:
    name: str        # catalog file name
    key: str         # its path (or source key)
    algorithm: str   # of the matching digest


def parse_entry(source: CatalogSource) -> CatalogEntry:
    """Read and parse one catalog into an index entry; damage becomes a status, never an error."""
    entry = CatalogEntry(source.name, source.key, source.size, source.mtime_ns, STATUS_OK)
    if source.size > MAX_CATALOG_SIZE:
        entry.status, entry.error = STATUS_UNPARSABLE, f"catalog larger than {MAX_CATALOG_SIZE} bytes"
        return entry
    try:
        data = source.read()
    except OSError as e:
        entry.status, entry.error = STATUS_UNPARSABLE, f"cannot read: {e.strerror or e}"
        return entry
    if not data:
        entry.status, entry.error = STATUS_EMPTY, "empty file"
        return entry
    try:
        cat = parse_catalog(data, path=source.key, details=False)
    except CatalogError as e:
        entry.status, entry.error = (STATUS_EMPTY if not data.strip(b"\0") else STATUS_UNPARSABLE), str(e)
        return entry
    entry.status = STATUS_OK if cat.signed else STATUS_UNSIGNED
    entry.member_count = len(cat.members)
    entry.member_list_type = cat.member_list_type
    entry.digests = cat.index_digests()
    return entry


class CatalogIndex:
    """Catalog entries plus a digest -> catalogs map."""

    def __init__(self, entries: Iterable[CatalogEntry], sources: dict[str, CatalogSource] | None = None,
                 stats: dict | None = None) -> None:
        self.entries: dict[str, CatalogEntry] = {}
        self._sources = sources or {}
        self._by_digest: dict[bytes, list[tuple[str, str]]] = {}
        self._verified: dict[tuple, "SignatureResult"] = {}
        self.stats = stats or {}
        for entry in entries:
            self.add(entry)

    def add(self, entry: CatalogEntry) -> None:
        self.entries[entry.key] = entry
        by_digest = self._by_digest
        key = entry.key
        for alg, digest in entry.digests:
            hit = (key, alg)
            hits = by_digest.setdefault(digest, [hit])
            if hits[-1] is not hit and hit not in hits:
                hits.append(hit)

    def __len__(self) -> int:
        return len(self.entries)

    def lookup(self, digest: bytes) -> list[Hit]:
        return [Hit(self.entries[key].name, key, alg) for key, alg in self._by_digest.get(digest, ())]

    def find(self, digests: dict[str, bytes]) -> list[Hit]:
        """Catalogs listing any of ``digests`` ({algorithm: digest}) under that algorithm."""
        out: list[Hit] = []
        for alg, digest in digests.items():
            for hit in self.lookup(digest):
                if hit.algorithm in (alg, "unknown") and hit not in out:
                    out.append(hit)
        return out

    def by_status(self, status: str) -> list[CatalogEntry]:
        return [e for e in self.entries.values() if e.status == status]

    def names(self) -> set[str]:
        return {e.name.lower() for e in self.entries.values()}

    def read_catalog_bytes(self, key: str) -> bytes:
        source = self._sources.get(key)
        if source is None:
            raise NotFound("catalog source not available", path=key)
        return source.read()

    def verify(self, key: str, *, trust: "TrustStore | None" = None, at: datetime | None = None) -> "SignatureResult":
        """Verify one indexed catalog's signature (memoized for this index)."""
        from offline_fix.signing.oids import SZ_OID_CTL
        from offline_fix.signing.verify import SignatureResult, Status, TrustStore, verify_signature_blob

        trust = trust or TrustStore.microsoft()
        memo = (key, trust.fingerprint, at)
        cached = self._verified.get(memo)
        if cached is not None:
            return cached
        try:
            data = self.read_catalog_bytes(key)
        except (OSError, NotFound) as e:
            result = SignatureResult(Status.PARSE_ERROR, f"cannot read catalog: {e}")
        else:
            result = verify_signature_blob(data, trust=trust, at=at, expected_content=SZ_OID_CTL, path=key)
        self._verified[memo] = result
        return result

    def summary(self) -> dict:
        counts: dict[str, int] = {}
        for e in self.entries.values():
            counts[e.status] = counts.get(e.status, 0) + 1
        return {"catalogs": len(self.entries), "digests": len(self._by_digest), "by_status": counts,
                **{k: v for k, v in self.stats.items() if k != "seconds"}}


def _load_cache(path: str) -> tuple[dict[str, dict], str]:
    try:
        with open(path, "rb") as f:
            doc = json.loads(f.read())
    except FileNotFoundError:
        return {}, "none"
    except (OSError, ValueError) as e:
        return {}, f"rebuilt (unreadable cache: {e})"
    if not isinstance(doc, dict) or doc.get("version") != CACHE_VERSION or not isinstance(doc.get("entries"), dict):
        return {}, "rebuilt (cache format changed)"
    return doc["entries"], "used"


def _save_cache(path: str, entries: dict[str, CatalogEntry]) -> None:
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    doc = {"version": CACHE_VERSION, "entries": {k: e.to_json() for k, e in entries.items()}}
    fd, tmp = tempfile.mkstemp(prefix=".catalog-index-", dir=directory)
    try:
        text = json.dumps(doc, separators=(",", ":"))  # the C encoder; json.dump is pure Python
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def build_index(sources: Iterable[Union[CatalogSource, str, os.PathLike]], *,
                state_dir: Union[str, os.PathLike, None] = None, cache_name: str = "catalogs",
                progress: Callable[[int, int], None] | None = None) -> CatalogIndex:
    """Index the catalogs once; with ``state_dir``, reuse and refresh the on-disk cache.

    ``stats`` on the result: parsed (read and parsed now), cached (taken from the cache),
    cache ("none", "used", "disabled" or "rebuilt (...)").
    """
    srcs = [s if isinstance(s, CatalogSource) else CatalogSource.from_path(s) for s in sources]
    cache_path = None
    cached: dict[str, dict] = {}
    cache_state = "disabled"
    if state_dir is not None:
        cache_path = os.path.join(os.fspath(state_dir), f"{cache_name}.index.json")
        cached, cache_state = _load_cache(cache_path)
    entries: dict[str, CatalogEntry] = {}
    parsed = reused = 0
    for i, src in enumerate(srcs):
        old = cached.get(src.key)
        entry = None
        if old is not None and old.get("size") == src.size and old.get("mtime_ns") == src.mtime_ns:
            try:
                entry = CatalogEntry.from_json(src.key, old)
                reused += 1
            except (KeyError, TypeError, ValueError):
                entry = None
                cache_state = "used (some entries rebuilt: malformed)"
        if entry is None:
            entry = parse_entry(src)
            parsed += 1
        entries[src.key] = entry
        if progress is not None:
            progress(i + 1, len(srcs))
    if cache_path is not None and (parsed or len(entries) != len(cached)):
        try:
            _save_cache(cache_path, entries)
        except OSError as e:  # reported in stats; the index itself is complete
            cache_state = f"{cache_state}; not saved: {e.strerror or e}"
    stats = {"parsed": parsed, "cached": reused, "cache": cache_state}
    return CatalogIndex(entries.values(), {s.key: s for s in srcs}, stats)
