"""Building images without a registry.

No image can be pulled on our machines, so images are made from a root filesystem on
disk and `docker import`ed. The smallest one, `busybox_image`, comes from the host's
static busybox binary (Debian's busybox-static) and serves as the engine smoke test
and for sandbox tests that need only a shell.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import struct
import subprocess
import tarfile
from pathlib import Path
from typing import Any

from sandboxes.engine import LABEL
from sandboxes.errors import ImageBuildError

BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")


def find_static_busybox() -> Path:
    """The host's statically linked busybox, or `ImageBuildError` saying how to get one."""
    for candidate in BUSYBOX_CANDIDATES:
        path = Path(candidate)
        if path.is_file() and not _has_interpreter(path):
            return path
    raise ImageBuildError("no static busybox found at /bin/busybox; install Debian's busybox-static package")


def _has_interpreter(path: Path) -> bool:
    """Whether an ELF executable asks for a dynamic loader (a PT_INTERP header)."""
    data = path.read_bytes()
    if data[:4] != b"\x7fELF":
        return True
    is64, little = data[4] == 2, data[5] == 1
    end = "<" if little else ">"
    if is64:
        phoff, phentsize, phnum = (
            struct.unpack_from(end + "Q", data, 0x20)[0],
            *struct.unpack_from(end + "HH", data, 0x36),
        )
    else:
        phoff, phentsize, phnum = (
            struct.unpack_from(end + "I", data, 0x1C)[0],
            *struct.unpack_from(end + "HH", data, 0x2A),
        )
    pt_interp = 3
    return any(struct.unpack_from(end + "I", data, phoff + i * phentsize)[0] == pt_interp for i in range(phnum))


def busybox_rootfs_tar(busybox: Path) -> bytes:
    """A tar stream of a minimal root filesystem: busybox, its applet links, /tmp and a
    /workspace owned by an unprivileged user (uid 1000)."""
    applets = subprocess.run([str(busybox), "--list"], capture_output=True, text=True, check=True).stdout.split()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:

        def add_dir(name: str, mode: int = 0o755, uid: int = 0) -> None:
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE
            info.mode = mode
            info.uid = info.gid = uid
            tar.addfile(info)

        def add_file(name: str, data: bytes, mode: int = 0o644) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = mode
            tar.addfile(info, io.BytesIO(data))

        for directory in ("bin", "etc", "dev", "proc", "sys", "root", "usr", "usr/bin"):
            add_dir(directory)
        add_dir("tmp", 0o1777)
        add_dir("workspace", 0o755, uid=1000)
        add_file("bin/busybox", busybox.read_bytes(), 0o755)
        for applet in applets:
            if applet == "busybox":
                continue
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type = tarfile.SYMTYPE
            link.linkname = "busybox"
            tar.addfile(link)
        add_file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nagent:x:1000:1000:agent:/workspace:/bin/sh\n")
        add_file("etc/group", b"root:x:0:\nagent:x:1000:\n")
    return buf.getvalue()


def busybox_image(client: Any, *, repository: str = "model-forensics/busybox") -> str:
    """Import (once per content hash) a busybox image and return its tag."""
    busybox = find_static_busybox()
    data = busybox_rootfs_tar(busybox)
    digest = hashlib.sha256(data).hexdigest()[:16]
    tag = f"{repository}:{digest}"
    from docker.errors import ImageNotFound

    try:
        client.images.get(tag)
        return tag
    except ImageNotFound:
        pass
    name, _, version = tag.partition(":")
    client.api.import_image_from_data(
        data, repository=name, tag=version, changes=[f"LABEL {LABEL}=image", "WORKDIR /workspace", 'CMD ["/bin/sh"]']
    )
    try:
        client.images.get(tag)
    except ImageNotFound:
        raise ImageBuildError(f"docker import of {tag} reported success but the image is missing") from None
    return tag


def have_tool(name: str) -> bool:
    """Whether a host program is on PATH (debootstrap, file...)."""
    return shutil.which(name) is not None
