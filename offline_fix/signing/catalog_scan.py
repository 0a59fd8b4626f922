"""Fast catalog scan for the index: the digests of every member, without parsing each member.

Indexing a CatRoot reads thousands of catalogs holding tens of thousands of members, and the
members of a catalog (and of all catalogs made by one tool) have very few distinct shapes: in a
v2 catalog every SHA1 member is the same bytes but for its 20-byte tag, every SHA256 member the
same but for its tag, its digest and the text of its name attributes. So this module memoizes
catalog.py's member parser over byte shapes:

- a member the shapes do not cover is parsed by ``catalog._member`` (the one member parser),
  which also reports the bytes it never reads (``MemberLayout``): the tag and digest contents
  and the bodies of the attributes it skips;
- that member becomes a *shape*: a regular expression matching its exact bytes, the outer
  header (so its length) included, with only those unread ranges left free (``.{n}``);
- a later member matching a shape has the same bytes wherever the parser would look, so the
  parser would take the same path and return the same result, with the tag and digest taken
  from the same offsets. Shapes are tried with one compiled alternation per run.

The envelope (SignedData, CTL fields, certificates, signers) is walked by catalog.py itself
(``index_head`` for the common shape with one member list, else ``_parse``), so its checks are
the same; any error met on the fast path makes ``index_facts`` parse the whole catalog again
with the full parser, so errors (and their messages) are the full parser's too.
Members with indefinite lengths are never learned as shapes. tests/test_signing_catalog_scan.py
checks the two paths give equal results on the real catalogs, the generated ones and fuzzed ones.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from offline_fix.signing import der as D
from offline_fix.signing.catalog import (
    CatalogError,
    MemberLayout,
    _member,
    _parse,
    _DIGEST_BY_LENGTH,
    _tlv,
    index_digests,
    index_head,
    parse_catalog,
    raw_tag_algorithm,
)

MAX_SHAPES = 256          # shapes kept per process
MAX_SIMPLE = 64           # of which "simple" ones (see ShapeCache)
CHUNK = 32                # shapes per compiled alternation (a new shape recompiles only its chunk)
MAX_SHAPE_LENGTH = 4096   # longer members are always parsed (their shapes rarely repeat)


class IndexFacts(NamedTuple):
    """What the catalog index keeps of one catalog: every member digest, and beside it (same
    position) the name of its algorithm."""

    signed: bool
    member_count: int
    member_list_type: str
    algorithms: list[str]
    digests: list[bytes]


class _Shape(NamedTuple):
    tag0: int                 # the tag's offsets from the member's first byte
    tag1: int
    digest0: int              # the SpcIndirectData digest's offsets (0, 0: none)
    digest1: int
    listed_as: str            # algorithm the digest is indexed under (its name, else "unknown")
    tag_algorithm: str | None  # no digest, and a tag of this length can only be a raw hash
    algorithm: str | None     # the digest's algorithm as _member names it


class ShapeCache:
    """Learned member shapes and their compiled alternations (one per process, see ``SHAPES``).

    Each alternation is ``(shape 1)|(shape 2)|...|(.)``: the last branch matches any byte, so
    ``finditer`` never skips a member it does not know, it stops on it (``table[i] is None``).

    A shape is also *simple* when its member is indexed under exactly one digest whose algorithm
    follows from its length: a v2 SHA1 member (its tag is the hash) or a v2 member whose tag
    equals its SpcIndirectData digest (the regex demands it: a back-reference). Simple shapes
    form one more alternation with one group each, the digest: a member list made only of them
    is cut and read by ``split``, with no Python code per member.
    A shape is *hex-tagged* when its member is a v1 one indexed under its SpcIndirectData
    digest alone: its tag is that digest's uppercase hex text in UTF-16 (maybe NUL-terminated,
    exactly 4 bytes per digest byte) and the digest's algorithm is the one its length names.
    They form a third alternation with two groups each, the tag text and the digest: a list
    made only of them is cut by ``split`` too, and its tags are checked against its digests
    in one comparison (the lengths keep each tag beside its own digest).
    Every shape starts with its member's complete header, so every shape matching at an offset
    ends at the same offset, and a list has one way only to be cut into members.
    """

    def __init__(self, limit: int = MAX_SHAPES) -> None:
        self.limit = limit
        self._sources: list[bytes] = []
        self._known: set[bytes] = set()
        self._shapes: list[_Shape] = []
        # (compiled alternation, [None] + its shapes + [None]: indexed by Match.lastindex)
        self.chunks: list[tuple[re.Pattern, list]] = []
        self._simple: list[list] = []        # regex parts, with _TAG / _SAME_AS_TAG markers
        self.simple: re.Pattern | None = None  # (S1)|(S2)|...
        self.simple_groups = 0
        self._hex: list[list] = []
        self.hex: re.Pattern | None = None     # (T1)\x00\x00?..(D1)..|(T2)..(D2)..|...
        self.hex_shapes = 0
        self._pending = False

    def __len__(self) -> int:
        return len(self._shapes)

    def learn(self, buf: bytes, start: int, end: int, layout: MemberLayout, algorithm: str | None) -> None:
        """Remember the member at buf[start:end] (already parsed into ``layout``) as a shape."""
        if len(self._shapes) >= self.limit or end - start > MAX_SHAPE_LENGTH or not layout.definite \
                or buf[start + 1] == 0x80:
            return
        free = [layout.tag] + ([layout.digest] if layout.digest else []) + layout.skipped
        parts: list = []  # literal regex bytes, or ("tag" | "digest" | "free", length)
        pos = start
        for a, b in sorted(f for f in free if f[1] > f[0]):
            parts.append(re.escape(buf[pos:a]))
            parts.append(("tag" if (a, b) == layout.tag else "digest" if (a, b) == layout.digest else "free", b - a))
            pos = b
        parts.append(re.escape(buf[pos:end]))
        source = _render(parts, None)
        if source in self._known:
            return
        self._known.add(source)
        t0, t1 = layout.tag[0] - start, layout.tag[1] - start
        d0, d1 = (0, 0) if layout.digest is None else (layout.digest[0] - start, layout.digest[1] - start)
        self._shapes.append(_Shape(t0, t1, d0, d1, algorithm or "unknown",
                                   raw_tag_algorithm(t1 - t0) if layout.digest is None else None, algorithm))
        self._sources.append(source)
        self._pending = True
        if _is_simple(buf, layout, algorithm):
            if len(self._simple) < MAX_SIMPLE:
                self._simple.append(parts)
        elif _is_hex_tagged(buf, layout, algorithm) and len(self._hex) < MAX_SIMPLE:
            self._hex.append(parts)

    def compile(self) -> None:
        """Recompile what new shapes changed (once per catalog, not per member)."""
        if not self._pending:
            return
        self._pending = False
        if len(self._simple) != self.simple_groups:
            branches = [_render(parts, i) for i, parts in enumerate(self._simple, 1)]
            self.simple = re.compile(b"|".join(branches), re.DOTALL)
            self.simple_groups = len(self._simple)
        if len(self._hex) != self.hex_shapes:
            self.hex = re.compile(b"|".join(_render_hex(parts) for parts in self._hex), re.DOTALL)
            self.hex_shapes = len(self._hex)
        first = min(len(self.chunks), (len(self._shapes) - 1) // CHUNK) * CHUNK
        del self.chunks[first // CHUNK:]
        for at in range(first, len(self._shapes), CHUNK):
            sources = self._sources[at:at + CHUNK] + [b"."]
            regex = re.compile(b"|".join(b"(" + s + b")" for s in sources), re.DOTALL)
            self.chunks.append((regex, [None] + self._shapes[at:at + CHUNK] + [None]))


def _render(parts: list, group: int | None) -> bytes:
    """A shape's regex: free ranges as ``.{n}``; with ``group``, the tag captured as that group
    and the digest required equal to it."""
    out = []
    for part in parts:
        if isinstance(part, bytes):
            out.append(part)
        elif group is not None and part[0] == "tag":
            out.append(b"(?P<g%d>.{%d})" % (group, part[1]))
        elif group is not None and part[0] == "digest":
            out.append(b"(?P=g%d)" % group)
        else:
            out.append(b".{%d}" % part[1])
    return b"".join(out)


def _render_hex(parts: list) -> bytes:
    """A hex-tagged shape's regex: its tag's hex text and its digest captured, in that order."""
    out = []
    for part in parts:
        if isinstance(part, bytes):
            out.append(part)
        elif part[0] == "tag":  # 4 bytes a digest byte, then maybe a UTF-16 NUL (_is_hex_tagged)
            out.append(b"(.{%d})" % (part[1] & ~3) + b"\x00\x00" * (part[1] & 3 == 2))
        elif part[0] == "digest":
            out.append(b"(.{%d})" % part[1])
        else:
            out.append(b".{%d}" % part[1])
    return b"".join(out)


def _is_hex_tagged(buf: bytes, layout: MemberLayout, algorithm: str | None) -> bool:
    """Indexed under its digest alone, the tag being that digest's hex text (catalog.tag_digest
    reads it back to the same bytes), with the algorithm the digest's length names."""
    if layout.digest is None:
        return False
    (t0, t1), (d0, d1) = layout.tag, layout.digest
    return algorithm is not None and algorithm == _DIGEST_BY_LENGTH.get(d1 - d0) \
        and buf[t0:t1] in _hex_text(buf[d0:d1])


def _hex_text(digest: bytes) -> tuple[bytes, bytes]:
    """A digest's uppercase hex text in UTF-16LE, without and with a NUL terminator."""
    text = digest.hex().upper().encode("utf-16-le")
    return text, text + b"\0\0"


def _is_simple(buf: bytes, layout: MemberLayout, algorithm: str | None) -> bool:
    """Indexed under one digest, the tag, whose algorithm its length gives (catalog.index_digests)."""
    t0, t1 = layout.tag
    if t1 <= t0 or raw_tag_algorithm(t1 - t0) is None:
        return False
    if layout.digest is None:
        return True
    d0, d1 = layout.digest
    return buf[t0:t1] == buf[d0:d1] and (algorithm or "unknown") == raw_tag_algorithm(t1 - t0)


SHAPES = ShapeCache()
_ALGORITHM_BY_LENGTH = {n: raw_tag_algorithm(n) for n in range(1, 257) if raw_tag_algorithm(n)}


class _Scan:
    """The member-list callback for catalog._parse: counts members and collects digests."""

    def __init__(self, shapes: ShapeCache) -> None:
        self.shapes = shapes
        self.count = 0
        self.algorithms: list[str] = []
        self.digests: list[bytes] = []

    def extend(self, pairs: list[tuple[str, bytes]]) -> None:
        for algorithm, digest in pairs:
            self.algorithms.append(algorithm)
            self.digests.append(digest)

    def __call__(self, buf: bytes, start: int, end: int) -> None:
        add_algorithm, add_digest, extend = self.algorithms.append, self.digests.append, self.extend
        chunks = self.shapes.chunks
        finditer, table = (chunks[0][0].finditer, chunks[0][1]) if chunks else (None, None)
        count = 0
        pos = start
        while pos < end:
            if finditer is not None:
                for m in finditer(buf, pos, end):  # contiguous: the last branch takes any byte
                    shape = table[m.lastindex]
                    if shape is None:
                        break
                    pos = m.start()
                    tag = buf[pos + shape[0]:pos + shape[1]]
                    if shape[3]:
                        digest = buf[pos + shape[2]:pos + shape[3]]
                        if tag == digest or tag in _hex_text(digest):
                            # v2: the tag is the digest; v1: its hex text (as UTF-16, maybe
                            # NUL-terminated). Either way catalog.index_digests lists it once
                            add_algorithm(shape[4])
                            add_digest(digest)
                        else:
                            extend(index_digests(tag, digest, shape[6]))
                    elif shape[5] is not None:
                        add_algorithm(shape[5])
                        add_digest(tag)
                    else:
                        extend(index_digests(tag, None, None))
                    pos = m.end()
                    count += 1
                else:
                    break  # matched up to ``end``
            count += 1
            pos = self._other(buf, pos, end, chunks)
        self.count += count

    def _other(self, buf: bytes, pos: int, end: int, chunks: list) -> int:
        """The member at ``pos`` through the other chunks, else the full member parser."""
        for regex, table in chunks[1:]:
            m = regex.match(buf, pos, end)
            shape = table[m.lastindex]
            if shape is not None:
                digest = buf[pos + shape[2]:pos + shape[3]] if shape[3] else None
                self.extend(index_digests(buf[pos + shape[0]:pos + shape[1]], digest, shape[6]))
                return m.end()
        return self._slow(buf, pos, end)

    def _slow(self, buf: bytes, pos: int, end: int) -> int:
        """Parse one member with the full member parser, learn its shape; returns the next offset."""
        at = pos
        tag, ms, me, pos = _tlv(buf, pos, end, "TrustedSubject")
        if tag != D.SEQUENCE:
            raise CatalogError("element is not a SEQUENCE", offset=at, field="TrustedSubject", found=hex(tag))
        layout = MemberLayout()
        member = _member(buf, ms, me, False, layout)
        self.extend(member.index_digests())
        self.shapes.learn(buf, at, pos, layout, member.digest_algorithm)
        return pos


def index_facts(data: bytes, *, path: str | None = None, shapes: ShapeCache | None = None) -> IndexFacts:
    """Signed flag, member count, member list type and every member digest of a catalog.

    Equal to ``parse_catalog(data, details=False)`` and its members' ``index_digests()``;
    raises the same CatalogError for broken input.
    """
    buf = bytes(data)
    shapes = SHAPES if shapes is None else shapes
    try:
        head = index_head(buf)
        if head is None:  # an uncommon envelope: catalog._parse walks it
            scan = _Scan(shapes)
            signed, list_type = _parse(buf, False, scan)
            return IndexFacts(signed, scan.count, list_type, scan.algorithms, scan.digests)
        signed, list_type, start, end = head
        # [gap, group 1 .. group k, gap, ...]: the shapes tile the list when every gap is empty;
        # each member then sets its groups (never empty), the other shapes' groups are None
        if list_type == "catalog_list_member":
            if shapes.hex is not None:
                parts = shapes.hex.split(buf[start:end])
                if not any(parts[::2 * shapes.hex_shapes + 1]):
                    found = list(filter(None, parts))  # tag text, digest, tag text, digest ...
                    digests = found[1::2]
                    if b"".join(found[::2]) == b"".join(digests).hex().upper().encode("utf-16-le"):
                        return IndexFacts(signed, len(digests), list_type,
                                          list(map(_DIGEST_BY_LENGTH.__getitem__, map(len, digests))), digests)
        elif shapes.simple is not None:
            parts = shapes.simple.split(buf[start:end])
            if not any(parts[::shapes.simple_groups + 1]):
                digests = list(filter(None, parts))  # each member's digest
                return IndexFacts(signed, len(digests), list_type,
                                  list(map(_ALGORITHM_BY_LENGTH.__getitem__, map(len, digests))), digests)
        scan = _Scan(shapes)
        scan(buf, start, end)
        return IndexFacts(signed, scan.count, list_type, scan.algorithms, scan.digests)
    except CatalogError:
        pass  # the full parser decides, and names the error
    finally:
        shapes.compile()
    cat = parse_catalog(buf, path=path, details=False)
    pairs = [d for m in cat.members for d in m.index_digests()]
    return IndexFacts(cat.signed, len(cat.members), cat.member_list_type, [a for a, _ in pairs], [d for _, d in pairs])


def reset_shapes() -> None:
    """Forget every learned shape (benchmarks measuring a first run; tests)."""
    global SHAPES
    SHAPES = ShapeCache()
