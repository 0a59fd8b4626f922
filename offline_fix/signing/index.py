"""A catalog index: digest -> (catalog, algorithm), built once per run and cached on disk.

``build_index`` reads each catalog once (catalog_scan.py: catalog.py's DER walker with its member
shapes memoized; no signature work) and maps every member digest to the catalogs listing it. The
result is cached in a state folder (index_cache.py: one binary file per folder), keyed per
catalog by (path, size, mtime_ns): a second run re-parses only catalogs that changed, appeared
or were replaced. A cache that cannot be read is rebuilt and the reason is recorded in
``stats["cache"]`` (never silently reused).

Catalog signatures are verified lazily (``CatalogIndex.verify``), only for catalogs that a
lookup actually hit, and memoized per (catalog, trust store, time) for the run.
"""

from __future__ import annotations

import gc
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from itertools import chain, repeat
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Union

from offline_fix.errors import NotFound, PermissionDenied
from offline_fix.signing import index_cache
from offline_fix.signing.catalog import CatalogError
from offline_fix.signing.catalog_scan import index_facts
from offline_fix.target.platform import OpenFolder, open_folder, open_nofollow, read_whole

if TYPE_CHECKING:
    from offline_fix.signing.verify import SignatureResult, TrustStore

CACHE_VERSION = index_cache.VERSION
# The file name predates the binary format (tests/test_cli_verify.py looks for it); the content
# is index_cache.py's, and a JSON cache left by an older version is reported and rebuilt.
CACHE_SUFFIX = ".index.bin"
MAX_CATALOG_SIZE = 256 << 20

STATUS_OK = "ok"
STATUS_UNSIGNED = "unsigned"
STATUS_EMPTY = "empty"
STATUS_UNPARSABLE = "unparsable"


class CatalogSource:
    """A catalog to index: a name, a stable key (its path), size, mtime and a way to read it."""

    __slots__ = ("name", "key", "size", "mtime_ns", "_read")

    def __init__(self, name: str, key: str, size: int | None, mtime_ns: int | None,
                 read: Callable[[], bytes] | None) -> None:
        self.name, self.key, self.size, self.mtime_ns, self._read = name, key, size, mtime_ns, read

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, size={self.size}, mtime_ns={self.mtime_ns})"

    def stat(self) -> None:
        """Make ``size`` and ``mtime_ns`` known (given up front here; see FileSource)."""

    def read(self) -> bytes:
        return self._read()

    @classmethod
    def from_path(cls, path: Union[str, os.PathLike]) -> "FileSource":
        path = os.fspath(path)
        source = FileSource(os.path.basename(path), path)
        try:
            source.stat()
        except FileNotFoundError as e:
            raise NotFound("catalog not found", path=path) from e
        except PermissionError as e:
            raise PermissionDenied("cannot stat catalog", path=path) from e
        return source


class FileSource(CatalogSource):
    """A catalog file on this machine. Its size and mtime come from ``stat()`` when a cached
    entry has to be compared, else from the open file as it is read (fstat: no second path
    lookup, and they describe exactly the bytes that were read). A link is not followed."""

    __slots__ = ("_folder",)

    def __init__(self, name: str, path: str, folder: OpenFolder | None = None) -> None:
        self.name, self.key, self.size, self.mtime_ns, self._read = name, path, None, None, None
        self._folder = folder

    def stat(self) -> None:
        if self.size is None:
            if self._folder is not None:
                st = os.stat(self.name, dir_fd=self._folder.fd, follow_symlinks=False)
            else:
                st = os.stat(self.key, follow_symlinks=False)
            self.size, self.mtime_ns = st.st_size, st.st_mtime_ns

    def read(self) -> bytes:
        """The whole file (at most MAX_CATALOG_SIZE bytes, else OSError EFBIG)."""
        if self._folder is not None:
            data, self.size, self.mtime_ns = self._folder.read(self.name, MAX_CATALOG_SIZE)
        else:
            data, self.size, self.mtime_ns = read_whole(open_nofollow(self.key), MAX_CATALOG_SIZE)
        return data


def catalog_sources(directory: Union[str, os.PathLike]) -> list[CatalogSource]:
    """Every ``*.cat`` file (any case) directly inside ``directory``, sorted by name (one
    directory read; nothing is stat'ed until it is needed)."""
    directory = os.fspath(directory)
    try:
        folder = open_folder(directory)
        with os.scandir(directory) as it:
            paths = {e.name: e.path for e in it if e.name[-4:].lower() == ".cat" and e.is_file(follow_symlinks=False)}
    except FileNotFoundError as e:
        raise NotFound("catalog folder not found", path=directory) from e
    except NotADirectoryError as e:
        raise NotFound("not a folder", path=directory) from e
    except PermissionError as e:
        raise PermissionDenied("cannot list catalog folder", path=directory) from e
    return [FileSource(name, paths[name], folder) for name in sorted(paths, key=str.lower)]


@dataclass(slots=True)
class CatalogEntry:
    name: str
    key: str
    size: int
    mtime_ns: int
    status: str                      # ok, unsigned, empty, unparsable
    error: str | None = None
    member_count: int = 0
    member_list_type: str | None = None
    # every member digest, and at the same position in ``algorithms`` the name of its algorithm
    algorithms: list[str] = field(default_factory=list)
    digests: list[bytes] = field(default_factory=list)

    @classmethod
    def cached(cls, key: str, name: str, size: int, mtime_ns: int, status: str, error: str | None,
               member_count: int, member_list_type: str | None, algorithms: list,
               digests: list) -> "CatalogEntry":
        """From index_cache's fields (in index_cache.FIELDS order)."""
        return cls(name, key, size, mtime_ns, status, error, member_count, member_list_type, algorithms, digests)

    def algorithms_of(self, digest: bytes) -> list[str]:
        """The algorithms this catalog lists ``digest`` under (usually one), in order."""
        return list(dict.fromkeys(a for a, d in zip(self.algorithms, self.digests) if d == digest))


@dataclass(frozen=True)
class Hit:
    name: str        # catalog file name
    key: str         # its path (or source key)
    algorithm: str   # of the matching digest


def parse_entry(source: CatalogSource) -> CatalogEntry:
    """Read and parse one catalog into an index entry; damage becomes a status, never an error."""
    if source.size is not None and source.size > MAX_CATALOG_SIZE:
        return CatalogEntry(source.name, source.key, source.size, source.mtime_ns, STATUS_UNPARSABLE,
                            f"catalog larger than {MAX_CATALOG_SIZE} bytes")
    try:
        data = source.read()
    except OSError as e:
        # an unknown size or mtime is stored as -1: it matches no file, so the next run retries
        return CatalogEntry(source.name, source.key, -1 if source.size is None else source.size,
                            -1 if source.mtime_ns is None else source.mtime_ns, STATUS_UNPARSABLE,
                            f"cannot read: {e.strerror or e}")
    # a FileSource knows its size and mtime now
    if not data:
        return CatalogEntry(source.name, source.key, source.size, source.mtime_ns, STATUS_EMPTY, "empty file")
    try:
        signed, count, list_type, algorithms, digests = index_facts(data, path=source.key)
    except CatalogError as e:
        return CatalogEntry(source.name, source.key, source.size, source.mtime_ns,
                            STATUS_EMPTY if not data.strip(b"\0") else STATUS_UNPARSABLE, str(e))
    return CatalogEntry(source.name, source.key, source.size, source.mtime_ns,
                        STATUS_OK if signed else STATUS_UNSIGNED, None, count, list_type, algorithms, digests)


class CatalogIndex:
    """Catalog entries plus a digest -> catalogs map."""

    def __init__(self, entries: Iterable[CatalogEntry], sources: dict[str, CatalogSource] | None = None,
                 stats: dict | None = None) -> None:
        self.entries: dict[str, CatalogEntry] = {}
        self._sources = sources or {}
        # digest -> the key of the catalog listing it, or a list of keys when several do (the
        # algorithms are looked up in the entry: few lookups, many digests)
        self._by_digest: dict[bytes, str | list[str]] = {}
        self._verified: dict[tuple, "SignatureResult"] = {}
        self.stats = stats or {}
        self._add_all(list(entries))

    def _add_all(self, entries: list[CatalogEntry]) -> None:
        """``add`` for many entries, with the per-digest work done by dict/zip/map in C: the
        map made here only differs from add's when digests repeat, which is handled apart."""
        self.entries.update((e.key, e) for e in entries)
        digests = list(chain.from_iterable(e.digests for e in entries))
        if not digests:
            return
        keys = [e.key for e in entries]
        counts = [len(e.digests) for e in entries]
        by_digest = dict(zip(digests, chain.from_iterable(map(repeat, keys, counts))))
        if len(by_digest) != len(digests):  # some digest is listed more than once
            seen: set[bytes] = set()
            repeated = {d for d in digests if d in seen or seen.add(d)}
            for d in repeated:
                del by_digest[d]
            for key, digest in zip(chain.from_iterable(map(repeat, keys, counts)), digests):
                if digest in repeated:
                    self._add_hit(by_digest, digest, key)
        if self._by_digest:
            for digest, hits in by_digest.items():
                for key in hits if type(hits) is list else (hits,):
                    self._add_hit(self._by_digest, digest, key)
        else:
            self._by_digest = by_digest

    def add(self, entry: CatalogEntry) -> None:
        self.entries[entry.key] = entry
        for digest in entry.digests:
            self._add_hit(self._by_digest, digest, entry.key)

    @staticmethod
    def _add_hit(by_digest: dict, digest: bytes, key: str) -> None:
        old = by_digest.setdefault(digest, key)
        if old is key:
            return
        if type(old) is str:
            if old != key:
                by_digest[digest] = [old, key]
        elif key not in old:
            old.append(key)

    def __len__(self) -> int:
        return len(self.entries)

    def lookup(self, digest: bytes) -> list[Hit]:
        keys = self._by_digest.get(digest)
        if keys is None:
            return []
        out = []
        for key in (keys,) if type(keys) is str else keys:
            entry = self.entries[key]
            out.extend(Hit(entry.name, key, alg) for alg in entry.algorithms_of(digest))
        return out

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


def _load_cache(path: str) -> tuple[dict[str, CatalogEntry], str]:
    try:
        return index_cache.load(path, CatalogEntry.cached), "used"
    except FileNotFoundError:
        return {}, "none"
    except index_cache.CacheError as e:
        return {}, f"rebuilt ({e.message})"


def build_index(sources: Iterable[Union[CatalogSource, str, os.PathLike]], *,
                state_dir: Union[str, os.PathLike, None] = None, cache_name: str = "catalogs",
                progress: Callable[[int, int], None] | None = None) -> CatalogIndex:
    """Index the catalogs once; with ``state_dir``, reuse and refresh the on-disk cache.

    ``stats`` on the result: parsed (read and parsed now), cached (taken from the cache),
    cache ("none", "used", "disabled" or "rebuilt (...)").
    """
    with _collector_paused():
        return _build_index(sources, state_dir, cache_name, progress)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Building an index allocates some 10 objects per catalog member, none in a reference
    cycle: the cyclic garbage collector would only re-scan them (a quarter of the time)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _build_index(sources, state_dir, cache_name, progress) -> CatalogIndex:
    srcs = [s if isinstance(s, CatalogSource) else CatalogSource.from_path(s) for s in sources]
    cache_path = None
    cached: dict[str, CatalogEntry] = {}
    cache_state = "disabled"
    if state_dir is not None:
        cache_path = os.path.join(os.fspath(state_dir), f"{cache_name}{CACHE_SUFFIX}")
        cached, cache_state = _load_cache(cache_path)
    entries: dict[str, CatalogEntry] = {}
    parsed = reused = 0
    for i, src in enumerate(srcs):
        entry = cached.get(src.key)
        if entry is not None:
            try:
                src.stat()
            except OSError:  # gone or unreadable since it was listed: parse_entry says which
                entry = None
        if entry is not None and entry.size == src.size and entry.mtime_ns == src.mtime_ns \
                and entry.name == src.name:
            reused += 1
        else:
            entry = parse_entry(src)
            parsed += 1
        entries[src.key] = entry
        if progress is not None:
            progress(i + 1, len(srcs))
    if cache_path is not None and (parsed or len(entries) != len(cached)):
        try:
            index_cache.save(cache_path, entries.values())
        except OSError as e:  # reported in stats; the index itself is complete
            cache_state = f"{cache_state}; not saved: {e.strerror or e}"
        except index_cache.CacheError as e:
            cache_state = f"{cache_state}; not saved: {e.message}"
    stats = {"parsed": parsed, "cached": reused, "cache": cache_state}
    return CatalogIndex(entries.values(), {s.key: s for s in srcs}, stats)
