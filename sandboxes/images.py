"""Building images without a registry.

No image can be pulled on our machines, so images are made from a root filesystem on
disk and `docker import`ed. The smallest one, `busybox_image`, comes from the host's
static busybox binary (Debian's busybox-static) and serves as the engine smoke test
and for sandbox tests that need only a shell.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import struct
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path, PurePosixPath
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


# ----------------------------------------------------------------- Debian base image

BASE_REPOSITORY = "model-forensics/base"
BASE_SUITE = "bookworm"
BASE_PACKAGES = ("python3", "git", "mypy", "coreutils", "procps", "ca-certificates")
BASE_MIRROR = "http://deb.debian.org/debian"
_BASE_RECIPE_VERSION = "1"
# Trimmed from the root filesystem: documentation and caches nobody in a sandbox reads.
_TRIM = ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale", "var/cache/apt", "var/lib/apt/lists")


def base_recipe_hash() -> str:
    """A hash of everything the base image is made from: rebuilt when it changes."""
    recipe = "|".join([_BASE_RECIPE_VERSION, BASE_SUITE, ",".join(BASE_PACKAGES), BASE_MIRROR])
    return hashlib.sha256(recipe.encode()).hexdigest()[:16]


def base_image_tag() -> str:
    return f"{BASE_REPOSITORY}:{base_recipe_hash()}"


def _image_exists(client: Any, tag: str) -> bool:
    from docker.errors import ImageNotFound

    try:
        client.images.get(tag)
    except ImageNotFound:
        return False
    return True


def _registry_reachable(client: Any) -> bool:
    """Whether `debian:bookworm-slim` can be pulled (fails in a second when offline)."""
    from docker.errors import APIError

    try:
        client.images.pull("debian", tag=f"{BASE_SUITE}-slim")
    except APIError:
        return False
    return True


_AGENT_SETUP = (
    "(getent group agent || groupadd -g 1000 agent) >/dev/null && "
    "(id agent || useradd -u 1000 -g 1000 -d /workspace -M -s /bin/bash agent) >/dev/null && "
    "mkdir -p /workspace && chown 1000:1000 /workspace"
)


def _build_from_dockerfile(client: Any, tag: str, log: Callable[[str], None]) -> None:
    dockerfile = f"""FROM debian:{BASE_SUITE}-slim
RUN apt-get update && apt-get install -y --no-install-recommends {" ".join(BASE_PACKAGES)} \\
    && rm -rf /var/lib/apt/lists/* && {_AGENT_SETUP}
LABEL {LABEL}=image
WORKDIR /workspace
ENV HOME=/workspace
"""
    log("building the base image from a Dockerfile (registry reachable)")
    client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=tag, rm=True, forcerm=True)


def _build_with_debootstrap(client: Any, tag: str, log: Callable[[str], None]) -> None:
    if os.geteuid() != 0:
        raise ImageBuildError("debootstrap needs root; run `forensics sandbox build` as root (CI does)")
    if shutil.which("debootstrap") is None:
        raise ImageBuildError("no registry is reachable and debootstrap is missing: apt-get install debootstrap")
    with tempfile.TemporaryDirectory(prefix="forensics-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        log(f"debootstrap {BASE_SUITE} ({', '.join(BASE_PACKAGES)}) from {BASE_MIRROR}")
        proc = subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(BASE_PACKAGES)}",
                BASE_SUITE,
                str(rootfs),
                BASE_MIRROR,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise ImageBuildError(
                f"debootstrap failed (exit {proc.returncode}):\n{proc.stdout[-1500:]}{proc.stderr[-1500:]}"
            )
        setup = subprocess.run(["chroot", str(rootfs), "sh", "-c", _AGENT_SETUP], capture_output=True, text=True)
        if setup.returncode != 0:
            raise ImageBuildError(f"creating the sandbox user failed: {setup.stderr[-1000:]}")
        for relative in _TRIM:
            shutil.rmtree(rootfs / relative, ignore_errors=True)
        archive = Path(tmp) / "rootfs.tar"
        log("docker import of the root filesystem")
        subprocess.run(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(archive), "."], check=True)
        name, _, version = tag.partition(":")
        client.api.import_image_from_file(
            str(archive),
            repository=name,
            tag=version,
            changes=[f"LABEL {LABEL}=image", "WORKDIR /workspace", "ENV HOME=/workspace", 'CMD ["/bin/bash"]'],
        )


def build_base_image(
    client: Any,
    *,
    method: str = "auto",
    force: bool = False,
    log: Callable[[str], None] = lambda _msg: None,
) -> str:
    """Build (or reuse) the Debian base image with python3, git and mypy, tagged by its
    recipe hash and also as ``:latest``. `method`: ``auto`` (Dockerfile when a registry
    answers, else debootstrap), ``dockerfile`` or ``debootstrap``."""
    tag = base_image_tag()
    if not force and _image_exists(client, tag):
        log(f"base image {tag} is up to date")
        client.images.get(tag).tag(BASE_REPOSITORY, "latest")
        return tag
    if method not in {"auto", "dockerfile", "debootstrap"}:
        raise ImageBuildError(f"unknown build method {method!r}; use auto, dockerfile or debootstrap")
    use_dockerfile = method == "dockerfile" or (method == "auto" and _registry_reachable(client))
    if use_dockerfile:
        _build_from_dockerfile(client, tag, log)
    else:
        _build_with_debootstrap(client, tag, log)
    if not _image_exists(client, tag):
        raise ImageBuildError(f"the build of {tag} finished but the image is missing")
    client.images.get(tag).tag(BASE_REPOSITORY, "latest")
    log(f"built {tag}")
    return tag


# ------------------------------------------------------------------- scenario images


def scenario_image_tag(name: str, base: str, files: Mapping[str, str | bytes], setup: list[str], base_id: str) -> str:
    """The tag of a scenario image: its name plus a hash of every input."""
    digest = hashlib.sha256()
    for part in (name, base, base_id, *setup):
        digest.update(part.encode() + b"\0")
    for path in sorted(files):
        content = files[path]
        digest.update(path.encode() + b"\0" + (content.encode() if isinstance(content, str) else content) + b"\0")
    return f"model-forensics/scenario-{_safe(name)}:{digest.hexdigest()[:16]}"


def _safe(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "-_." else "-" for c in name.lower()).strip("-.")
    return cleaned or "unnamed"


def build_scenario_image(
    client: Any,
    *,
    name: str,
    base: str,
    files: Mapping[str, str | bytes],
    setup: list[str],
    workdir: str = "/workspace",
    log: Callable[[str], None] = lambda _msg: None,
) -> str:
    """Build an image on top of `base` that adds `files` (paths relative to the
    workspace, owned by the sandbox user) and runs `setup` as that user, with no
    network. Cached by a hash of the inputs and the base image id."""
    base_id = client.images.get(base).id
    tag = scenario_image_tag(name, base, files, setup, base_id)
    if _image_exists(client, tag):
        log(f"scenario image {tag} is up to date")
        return tag
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        for path, content in files.items():
            rel = PurePosixPath(path)
            if rel.is_absolute() or ".." in rel.parts:
                raise ImageBuildError(f"scenario file path must be relative to the workspace: {path!r}")
            data = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(f"files/{rel}")
            info.size = len(data)
            info.mode = 0o755 if data.startswith(b"#!") else 0o644
            tar.addfile(info, io.BytesIO(data))
        lines = [f"FROM {base}", f"LABEL {LABEL}=image", f"WORKDIR {workdir}"]
        if files:
            lines.append(f"COPY --chown=1000:1000 files/ {workdir}/")
        lines.append("USER 1000:1000")
        lines += [f"RUN {command}" for command in setup]
        dockerfile = ("\n".join(lines) + "\n").encode()
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile)
        tar.addfile(info, io.BytesIO(dockerfile))
    context.seek(0)
    from docker.errors import BuildError

    log(f"building scenario image {tag}")
    try:
        client.images.build(fileobj=context, custom_context=True, tag=tag, network_mode="none", rm=True, forcerm=True)
    except BuildError as exc:
        tail = "".join(str(chunk.get("stream", chunk.get("error", ""))) for chunk in exc.build_log)[-2000:]
        raise ImageBuildError(f"scenario image {name!r} failed to build: {exc.msg}\n{tail}") from None
    return tag


# ------------------------------------------------------------------- workspace images


def workspace_image_tag(base_id: str, workdir: str, digest: str) -> str:
    """The tag of a world image: a hash of its base, where the workspace goes and its content."""
    key = hashlib.sha256(f"{base_id}\0{workdir}\0{digest}".encode()).hexdigest()[:16]
    return f"model-forensics/world:{key}"


def build_workspace_image(
    client: Any,
    *,
    base: str,
    add_workspace: Callable[[tarfile.TarFile], None],
    digest: str,
    workdir: str = "/workspace",
    log: Callable[[str], None] = lambda _msg: None,
) -> str:
    """Build an image on `base` with a workspace at `workdir`, owned by the sandbox user.

    `add_workspace(tar)` adds the workspace to the build context as ``workspace/...``
    members (their modes, mtimes and symlinks are kept, so give them uid 1000); `digest`
    identifies its content for the cache.
    The only commands run are the image's own ``mkdir`` and ``chown`` of `workdir`: nothing
    from the workspace executes during the build (its setup runs later, in a sandbox)."""
    if not workdir.startswith("/") or any(ord(c) < 32 for c in workdir):
        raise ImageBuildError(f"workspace directory must be an absolute path without control characters: {workdir!r}")
    try:
        base_id = client.images.get(base).id
    except Exception as exc:
        raise ImageBuildError(f"base image {base!r} is not in the engine ({exc}); load or build it first") from None
    tag = workspace_image_tag(base_id, workdir, digest)
    if _image_exists(client, tag):
        log(f"world image {tag} is up to date")
        return tag
    quoted = json.dumps(workdir)
    dockerfile = "\n".join(
        [
            f"FROM {base}",
            f"LABEL {LABEL}=image",
            "USER 0:0",
            f'RUN ["mkdir", "-p", {quoted}]',
            f'RUN ["chown", "1000:1000", {quoted}]',
            f'COPY --chown=1000:1000 ["workspace/", {json.dumps(workdir.rstrip("/") + "/")}]',
            f"WORKDIR {workdir}",
            "",
        ]
    ).encode()
    with tempfile.TemporaryFile() as merged:
        with tarfile.open(fileobj=merged, mode="w") as tar:
            add_workspace(tar)
            info = tarfile.TarInfo("Dockerfile")
            info.size = len(dockerfile)
            tar.addfile(info, io.BytesIO(dockerfile))
        merged.seek(0)
        from docker.errors import APIError, BuildError

        log(f"building world image {tag}")
        try:
            client.images.build(
                fileobj=merged, custom_context=True, tag=tag, network_mode="none", rm=True, forcerm=True
            )
        except BuildError as exc:
            tail = "".join(str(chunk.get("stream", chunk.get("error", ""))) for chunk in exc.build_log)[-2000:]
            raise ImageBuildError(f"the world image failed to build: {exc.msg}\n{tail}") from None
        except APIError as exc:
            raise ImageBuildError(f"the world image failed to build: {exc.explanation or exc}") from None
    return tag
