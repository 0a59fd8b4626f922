"""The seek/tell plumbing shared by the target layer's read-only streams (a window of a disk, a
FAT file over its clusters, an NTFS file over its runs): subclasses give ``readinto`` or ``read``."""

from __future__ import annotations

import io


class ReadOnlyStream(io.RawIOBase):
    size: int = 0  # bytes in the stream
    pos: int = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self.pos = base + offset
        return self.pos
