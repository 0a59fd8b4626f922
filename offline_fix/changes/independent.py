"""Re-read a file through code offline-fix did not write, to confirm what it wrote.

Images and block devices: the container through dissect.hypervisor (raw: the file itself), the
NTFS volume through The Sleuth Kit (pytsk3), never through our own container, NTFS-mapping or
hive code. Folder targets: a plain read by the operating system.
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


def read_file_in_image(host_path: str, fmt: str, size: int, volume_offset: int, path: str) -> bytes:
    """The whole content of ``path`` in the NTFS volume at ``volume_offset`` of the disk."""
    import pytsk3

    fh, stream = _open_container(host_path, fmt)

    class _Image(pytsk3.Img_Info):
        def __init__(self) -> None:
            super().__init__(url="", type=pytsk3.TSK_IMG_TYPE_EXTERNAL)

        def read(self, offset, length):
            stream.seek(offset)
            return stream.read(length)

        def get_size(self):
            return size

    try:
        fs = pytsk3.FS_Info(_Image(), offset=volume_offset)
        tsk_file = fs.open("/" + path.replace("\\", "/").lstrip("/"))
        length = tsk_file.info.meta.size
        return tsk_file.read_random(0, length) if length else b""
    except OSError as exc:
        raise VerificationFailed(f"The Sleuth Kit could not read {path} back: {exc}") from None
    finally:
        fh.close()


def read_file_in_folder(host_path: str) -> bytes:
    try:
        with open(host_path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise VerificationFailed(f"{host_path} could not be read back: {exc}") from None
