"""One root error for the whole tool; every layer raises a subclass of it.

Each class carries the exit code the command line returns for it (documented in README.md).
Errors about input name what was being read and where: ``offset``, ``field``, ``expected``,
``found``. Nothing here imports any other part of offline_fix, so every layer may use it.
"""

from __future__ import annotations

from contextlib import contextmanager


class OfflineFixError(Exception):
    """Root of every error offline-fix raises on purpose."""

    exit_code = 10

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        offset: int | None = None,
        field: str | None = None,
        expected: object = None,
        found: object = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.offset = offset
        self.field = field
        self.expected = expected
        self.found = found

    def __str__(self) -> str:
        parts = [self.message]
        where = []
        if self.path is not None:
            where.append(str(self.path))
        if self.offset is not None:
            where.append(f"offset {self.offset:#x}")
        if self.field is not None:
            where.append(f"field {self.field}")
        if where:
            parts.append(f"({', '.join(where)})")
        if self.expected is not None or self.found is not None:
            parts.append(f"expected {self.expected!r}, found {self.found!r}")
        return " ".join(parts)

    def to_dict(self) -> dict:
        d = {"error": type(self).__name__, "message": self.message, "exit_code": self.exit_code}
        for key in ("path", "offset", "field"):
            value = getattr(self, key)
            if value is not None:
                d[key] = value
        if self.expected is not None or self.found is not None:
            d["expected"] = repr(self.expected)
            d["found"] = repr(self.found)
        return d


class NotFound(OfflineFixError):
    """A path, key, value, install or object that was asked for does not exist."""

    exit_code = 3


class PermissionDenied(OfflineFixError):
    """The operating system refused access (a device without permission, say)."""

    exit_code = 4


class CorruptInput(OfflineFixError):
    """Input that is broken: bad signature, bad checksum, offset out of range, truncation.

    Each on-disk format has its own subclass (HiveError, VhdxError, CatalogError ...).
    """

    exit_code = 5


class Unsupported(OfflineFixError):
    """Sound input that offline-fix cannot handle (yet): BitLocker, differencing disks ..."""

    exit_code = 6


class Refused(OfflineFixError):
    """A safety guard refused a write: mounted device, dirty hive, concurrent writer ..."""

    exit_code = 7


class VerificationFailed(OfflineFixError):
    """Sound input that is not trusted, or a write whose independent re-read disagreed."""

    exit_code = 8


@contextmanager
def input_file(path: str, what: str):
    """Open ``path`` for reading in binary; the OS's refusals become NotFound or PermissionDenied
    naming ``what`` ("dump file", "event log" ...)."""
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        raise NotFound(f"{what} not found", path=path) from None
    except IsADirectoryError:
        raise NotFound(f"{what}: the path is a folder, not a file", path=path) from None
    except PermissionError:
        raise PermissionDenied(f"cannot read the {what}", path=path) from None
    with fh:
        yield fh
