"""Re-read files through code offline-fix did not write, to confirm what it wrote.

Images and block devices: the container through dissect.hypervisor (raw: the file itself), the
volume (NTFS or FAT) through The Sleuth Kit (pytsk3), never through our own container,
file-mapping or hive code. Folder targets: a plain read by the operating system.
"""

from __future__ import annotations

from offline_fix.errors import VerificationFailed


def _open_container(host_path: str, fmt: str):
    fh = open(host_path, "rb")
    if fmt == "vhdx":
        from dissect.hypervisor.disk.vhdx import VHDX

        return fh, VHDX(fh)
    if fmt == "vhd":
        from dissect.hypervisor.disk.vhd import VHD

        return fh, VHD(fh)
    return fh, fh


class ImageReader:
    """One volume of a disk image opened once with The Sleuth Kit; ``read(path)`` gives a file's
    bytes, or None when the path does not exist. Use as a context manager."""

    def __init__(self, host_path: str, fmt: str, size: int, volume_offset: int) -> None:
        import pytsk3

        self._fh, stream = _open_container(host_path, fmt)

        class _Image(pytsk3.Img_Info):
            def __init__(self) -> None:
                super().__init__(url="", type=pytsk3.TSK_IMG_TYPE_EXTERNAL)

            def read(self, offset, length):
                stream.seek(offset)
                return stream.read(length)

            def get_size(self):
                return size

        try:
            self._fs = pytsk3.FS_Info(_Image(), offset=volume_offset)
        except OSError as exc:
            self._fh.close()
            raise VerificationFailed(f"The Sleuth Kit cannot open the volume at offset {volume_offset}: {exc}") from None
        self._folders: dict[str, dict[str, int]] = {}

    def read(self, path: str) -> bytes | None:
        """The file's bytes, or None when it does not exist. Each folder is listed by The Sleuth
        Kit once per reader (its allocated names, matched case-insensitively as Windows does)
        and files opened by their MFT entry: a path lookup lists the whole folder each time,
        which made re-reading 5,000 new catalogs of one folder take minutes."""
        folder, _, name = path.replace("\\", "/").strip("/").rpartition("/")
        names = self._folders.get(folder.lower())
        if names is None:
            names = self._folders[folder.lower()] = self._list(folder)
        address = names.get(name.lower())
        if address is None:
            return None
        try:
            tsk_file = self._fs.open_meta(inode=address)
            length = tsk_file.info.meta.size
            data = tsk_file.read_random(0, length) if length else b""
        except OSError as exc:
            raise VerificationFailed(f"The Sleuth Kit could not read {path} back: {exc}") from None
        if len(data) != length:
            raise VerificationFailed(f"The Sleuth Kit read {len(data)} of {length} bytes of {path}")
        return data

    def _list(self, folder: str) -> dict[str, int]:
        """Lower-cased name -> MFT entry of the allocated names in ``folder`` ({} when missing)."""
        import pytsk3

        try:
            directory = self._fs.open_dir(path="/" + folder)
        except OSError as exc:
            if "not found" in str(exc).lower() or "not a directory" in str(exc).lower():
                return {}
            raise VerificationFailed(f"The Sleuth Kit could not list {folder or '/'}: {exc}") from None
        out: dict[str, int] = {}
        for entry in directory:
            info = entry.info.name
            if not info.flags & pytsk3.TSK_FS_NAME_FLAG_ALLOC:
                continue  # a deleted name left in the index
            name = info.name.decode("utf-8", "surrogateescape")
            if name not in (".", ".."):
                out.setdefault(name.lower(), info.meta_addr)
        return out

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> "ImageReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_file_in_folder(host_path: str) -> bytes:
    try:
        with open(host_path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise VerificationFailed(f"{host_path} could not be read back: {exc}") from None
