"""Worlds rebuilt from a snapshot of the workspace: reading archives, directories and git
sources safely, the environment's validation, the backend policy for untrusted worlds,
and real Docker and local sandboxes built from a snapshot."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest

from sandboxes.registry import remove_snapshot
from tools.errors import IncidentError
from tools.incident import Environment, load_incident
from tools.snapshot import (
    BUNDLE_NAME,
    WorkspaceLimits,
    read_archive,
    read_directory,
    read_workspace,
    sandbox_root_for,
    snapshot_world,
)
from tools.world import WorldError, WorldRequest, build_world


def _tar(path: Path, members: list[tuple[str, str, Any]], mode: str = "w:gz") -> Path:
    """Members as (name, kind, payload): file -> bytes, dir -> None, symlink/hardlink ->
    target, fifo/char -> None."""
    with tarfile.open(path, mode) as tar:
        for name, kind, payload in members:
            info = tarfile.TarInfo(name)
            info.mtime = 1_700_000_000
            if kind == "file":
                info.size, info.mode = len(payload), 0o644
                tar.addfile(info, io.BytesIO(payload))
                continue
            info.type = {
                "dir": tarfile.DIRTYPE,
                "symlink": tarfile.SYMTYPE,
                "hardlink": tarfile.LNKTYPE,
                "fifo": tarfile.FIFOTYPE,
                "char": tarfile.CHRTYPE,
                "exec": tarfile.REGTYPE,
            }[kind]
            if kind in {"symlink", "hardlink"}:
                info.linkname = payload
            if kind == "exec":
                info.size, info.mode = len(payload), 0o755
                tar.addfile(info, io.BytesIO(payload))
                continue
            tar.addfile(info)
    return path


# --------------------------------------------------------------------------- reading
def test_a_tar_gz_workspace_keeps_files_modes_mtimes_and_inner_symlinks(tmp_path: Path) -> None:
    archive = _tar(
        tmp_path / "ws.tar.gz",
        [
            ("proj/", "dir", None),
            ("proj/src/a.py", "file", b"print(1)\n"),
            ("proj/run.sh", "exec", b"#!/bin/sh\necho hi\n"),
            ("proj/link.py", "symlink", "src/a.py"),
            ("proj/copy.py", "hardlink", "proj/src/a.py"),
        ],
    )
    entries = {e.path: e for e in read_archive(archive, strip=1)}
    assert set(entries) == {"src/a.py", "run.sh", "link.py", "copy.py"}
    assert entries["src/a.py"].data == b"print(1)\n" and entries["src/a.py"].mtime == 1_700_000_000
    assert entries["run.sh"].mode == 0o755
    assert entries["link.py"].kind == "symlink" and entries["link.py"].target == "src/a.py"
    assert entries["copy.py"].kind == "file" and entries["copy.py"].data == b"print(1)\n"


@pytest.mark.parametrize(
    ("member", "message"),
    [
        (("/etc/passwd", "file", b"x"), "absolute path"),
        (("../evil", "file", b"x"), "climbs out of the workspace"),
        (("a/../../evil", "file", b"x"), "climbs out of the workspace"),
        (("link", "symlink", "/etc/shadow"), "points outside the workspace"),
        (("d/link", "symlink", "../../outside"), "points outside the workspace"),
        (("pipe", "fifo", None), "device, FIFO or other special file"),
        (("tty", "char", None), "device, FIFO or other special file"),
        (("hard", "hardlink", "not-there"), "points at no earlier file"),
    ],
)
def test_unsafe_archive_members_are_refused_naming_the_member(
    tmp_path: Path, member: tuple[str, str, Any], message: str
) -> None:
    archive = _tar(tmp_path / "bad.tar", [member], mode="w")
    with pytest.raises(WorldError, match=message) as caught:
        read_archive(archive)
    assert member[0].lstrip("/").split("/")[-1] in str(caught.value) or member[0] in str(caught.value)


def test_size_and_count_caps_are_checked_before_reading(tmp_path: Path) -> None:
    archive = _tar(tmp_path / "big.tar.gz", [(f"f{i}", "file", b"x" * 1000) for i in range(20)])
    with pytest.raises(WorldError, match="exceeds 5000 bytes"):
        read_archive(archive, limits=WorkspaceLimits(max_bytes=5000))
    with pytest.raises(WorldError, match="more than 10 entries"):
        read_archive(archive, limits=WorkspaceLimits(max_entries=10))


def test_zip_workspaces_and_zip_bombs(tmp_path: Path) -> None:
    good = tmp_path / "ws.zip"
    with zipfile.ZipFile(good, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("pkg/mod.py", "x = 1\n")
        info = zipfile.ZipInfo("pkg/tool")
        info.external_attr = 0o100755 << 16
        z.writestr(info, "#!/bin/sh\n")
        link = zipfile.ZipInfo("pkg/alias.py")
        link.external_attr = 0o120777 << 16
        z.writestr(link, "mod.py")
    entries = {e.path: e for e in read_archive(good)}
    assert entries["pkg/mod.py"].data == b"x = 1\n" and entries["pkg/tool"].mode == 0o755
    assert entries["pkg/alias.py"].kind == "symlink" and entries["pkg/alias.py"].target == "mod.py"
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("zeros", b"\0" * (8 * 1024 * 1024))
    with pytest.raises(WorldError, match="likely zip bomb"):
        read_archive(bomb)
    not_an_archive = tmp_path / "x.tar"
    not_an_archive.write_text("hello")
    with pytest.raises(WorldError, match="not a tar or zip archive"):
        read_archive(not_an_archive)


def test_directories_are_read_without_following_links_out(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a.txt").write_text("a")
    (root / "inner").symlink_to("sub/a.txt")
    entries = {e.path: e for e in read_directory(root)}
    assert entries["sub/a.txt"].data == b"a" and entries["inner"].kind == "symlink"
    (root / "escape").symlink_to("/etc/passwd")
    with pytest.raises(WorldError, match="points outside the workspace"):
        read_directory(root)
    (root / "escape").unlink()
    os.mkfifo(root / "pipe")
    with pytest.raises(WorldError, match="FIFO"):
        read_directory(root)


def test_workspace_paths_are_confined_to_the_incident_folder(tmp_path: Path) -> None:
    inside = tmp_path / "case"
    inside.mkdir()
    _tar(tmp_path / "outside.tar.gz", [("a", "file", b"a")])
    with pytest.raises(WorldError, match="outside the incident's folder"):
        read_workspace(Environment(archive="../outside.tar.gz"), inside)
    with pytest.raises(WorldError, match="not found"):
        read_workspace(Environment(archive="missing.tar.gz"), inside)
    with pytest.raises(WorldError, match="no file to resolve it against"):
        read_workspace(Environment(directory="ws"), None)


def _git(cwd: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@x",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@x",
        "GIT_CONFIG_GLOBAL": "/dev/null",
    }
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, str, str]:
    """A repository with two commits; returns (path, first commit, second commit)."""
    path = tmp_path / "case" / "repo"
    path.mkdir(parents=True)
    _git(path, "init", "-q", "-b", "main")
    (path / "app.py").write_text("v = 1\n")
    _git(path, "add", "-A")
    _git(path, "commit", "-qm", "one")
    first = _git(path, "rev-parse", "HEAD")
    (path / "app.py").write_text("v = 2\n")
    _git(path, "commit", "-qam", "two")
    return path, first, _git(path, "rev-parse", "HEAD")


def test_git_sources_are_copied_as_data(repo: tuple[Path, str, str]) -> None:
    path, first, _ = repo
    workspace = read_workspace(Environment(git={"repo": "repo", "commit": first}), path.parent)
    assert workspace.git_commit == first and not workspace.git_bundle
    assert all(e.path.startswith(".git/") for e in workspace.entries)
    assert not any(e.path == "app.py" for e in workspace.entries)  # the tree comes from the checkout, in the sandbox
    _git(path, "bundle", "create", "../repo.bundle", "--all")
    bundled = read_workspace(Environment(git={"repo": "repo.bundle", "commit": "main"}), path.parent)
    assert [e.path for e in bundled.entries] == [BUNDLE_NAME] and bundled.git_bundle
    (path.parent / "not-a-bundle").write_text("hello")
    with pytest.raises(WorldError, match="must be a git bundle"):
        read_workspace(Environment(git={"repo": "not-a-bundle", "commit": "main"}), path.parent)


# --------------------------------------------------------------------------- the environment
@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"scenario": "x", "archive": "a.tar"}, "a scenario builds its own world"),
        ({"archive": "a.tar", "directory": "d"}, "one workspace source, not archive and directory"),
        ({}, "give either `scenario`"),
        ({"directory": "d", "workdir": "relative/dir"}, "absolute POSIX path"),
        ({"directory": "d", "workdir": "/usr/lib"}, "system directory"),
        ({"directory": "d", "workdir": "/home/x/../../etc"}, "must not contain `..`"),
        ({"directory": "d", "harness": "vim"}, "unknown harness 'vim'"),
        ({"directory": "d", "setup": ["  "]}, "non-empty shell command"),
        ({"git": {"repo": "r", "commit": "--upload-pack=evil"}}, "String should match pattern"),
    ],
)
def test_environment_validation(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Environment.model_validate(fields)


def test_the_incident_file_names_the_field(tmp_path: Path) -> None:
    (tmp_path / "t.json").write_text(
        '{"messages": [{"role": "assistant", "content": [{"type": "text", "text": "x"}]}]}'
    )
    (tmp_path / "incident.yaml").write_text(
        "transcript: t.json\nflag: {turn: 0, reason: r}\nenvironment: {archive: a.tar, git: {repo: r, commit: c}}\n"
        "subject: {model: scripted/x}\nbehavior: {kind: regex, pattern: x}\n"
    )
    with pytest.raises(IncidentError, match=r"field `environment`: .*one workspace source"):
        load_incident(tmp_path / "incident.yaml")


def test_where_the_workspace_is_placed() -> None:
    assert sandbox_root_for("/home/dev/tally") == "/home/dev/tally"
    assert sandbox_root_for("/tmp/scratch/proj") == "/workspace"  # /tmp is a fresh tmpfs in a sandbox


# --------------------------------------------------------------------------- backend policy
def test_untrusted_worlds_never_fall_back_to_the_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = Environment(files={"a.txt": "a"})
    with pytest.raises(WorldError, match="pass --allow-host"):
        build_world(env, backend="local")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    with pytest.raises(WorldError, match=r"no Docker engine answered.*--backend local --allow-host"):
        build_world(env)
    world = build_world(env, allow_host=True)
    assert world.backend == "local" and not world.trusted and "no Docker engine" in (world.note or "")
    with pytest.raises(WorldError, match="needs the docker backend"):
        build_world(Environment(image="someimage:1"), backend="local", allow_host=True)


# --------------------------------------------------------------------------- real sandboxes
async def test_a_local_world_is_written_through_the_file_api(tmp_path: Path) -> None:
    _tar(
        tmp_path / "ws.tar.gz",
        [
            ("src/a.py", "file", b"print(1)\n"),
            ("run.sh", "exec", b"#!/bin/sh\necho ran\n"),
            ("l", "symlink", "src/a.py"),
        ],
    )
    env = Environment(archive="ws.tar.gz", files={"extra.txt": "extra"}, setup=["./run.sh > setup.out"])
    world = snapshot_world(env, WorldRequest(backend="local", allow_host=True, base_dir=tmp_path))
    assert world.kind == "snapshot" and world.sandbox_spec.workdir == "/workspace"
    async with await world.start() as sandbox:
        assert await sandbox.read_file("src/a.py") == b"print(1)\n"
        assert await sandbox.read_file("extra.txt") == b"extra"
        assert await sandbox.read_file("setup.out") == b"ran\n"  # setup ran inside, after the files
        listing = await sandbox.exec(["sh", "-c", "test -x run.sh && readlink l && stat -c %Y src/a.py"])
        assert listing.stdout.split() == ["src/a.py", "1700000000"]


async def test_a_failing_setup_command_is_a_clear_world_error(tmp_path: Path) -> None:
    env = Environment(files={"a.txt": "a"}, setup=["echo broken >&2; exit 3"])
    world = snapshot_world(env, WorldRequest(backend="local", allow_host=True, base_dir=tmp_path))
    with pytest.raises(WorldError, match=r"could not be prepared: setup command failed \(exit 3"):
        await world.start()


@pytest.mark.docker
async def test_a_docker_world_places_the_workspace_at_the_sessions_path(
    tmp_path: Path, docker: Any, base_image: str, repo: tuple[Path, str, str]
) -> None:
    path, first, _ = repo
    env = Environment(
        git={"repo": "repo", "commit": first},
        workdir="/home/dev/app",
        files={"local.cfg": "debug = true\n"},
        setup=["git log --format=%s > log.txt"],
    )
    world = snapshot_world(env, WorldRequest(backend="docker", base_dir=path.parent, client=docker))
    assert world.backend == "docker" and world.sandbox_spec.workdir == "/home/dev/app"
    assert world.mapping.paths.identity
    async with await world.start() as sandbox:
        assert await sandbox.read_file("/home/dev/app/app.py") == b"v = 1\n"  # the first commit, checked out
        assert await sandbox.read_file("log.txt") == b"one\n"
        assert await sandbox.read_file("local.cfg") == b"debug = true\n"
        who = await sandbox.exec("pwd && stat -c %u app.py && git status --short")
        assert who.stdout == "/home/dev/app\n1000\n?? local.cfg\n?? log.txt\n"
        snapshot = await sandbox.snapshot()
    try:
        async with await world.start(from_snapshot=snapshot) as fork:  # forks skip preparation: state is kept
            assert await fork.read_file("log.txt") == b"one\n"
    finally:
        await remove_snapshot(snapshot)
    again = snapshot_world(env, WorldRequest(backend="docker", base_dir=path.parent, client=docker))
    assert again.sandbox_spec.image == world.sandbox_spec.image  # the image is cached by content
    docker.images.remove(world.sandbox_spec.image)  # this repository's commits are new on every run


def test_the_incident_file_names_a_missing_or_escaping_workspace(tmp_path: Path) -> None:
    case = tmp_path / "case"
    case.mkdir()
    (case / "t.json").write_text('{"messages": [{"role": "assistant", "content": [{"type": "text", "text": "x"}]}]}')
    _tar(tmp_path / "outside.tar.gz", [("a", "file", b"a")])
    for archive, message in (("../outside.tar.gz", "leads outside the incident's folder"), ("gone.tar", "not found")):
        (case / "incident.yaml").write_text(
            f"transcript: t.json\nflag: {{turn: 0, reason: r}}\nenvironment: {{archive: {archive}}}\n"
            "subject: {model: scripted/x}\nbehavior: {kind: regex, pattern: x}\n"
        )
        with pytest.raises(IncidentError, match=f"field `environment.archive.path`: .*{message}"):
            load_incident(case / "incident.yaml")


async def test_a_variant_that_deletes_a_file_deletes_it_from_the_rebuilt_workspace(tmp_path: Path) -> None:
    from tools.edit import DeleteFile, WriteFile, apply
    from tools.transcript import Transcript

    _tar(tmp_path / "ws.tar.gz", [("docs/Documentation.md", "file", b"read me"), ("keep.txt", "file", b"k")])
    env = Environment(archive="ws.tar.gz")
    applied = apply([DeleteFile(path="docs/Documentation.md")], Transcript(), env)
    assert applied.environment is not None and applied.environment.remove == ["docs/Documentation.md"]
    world = snapshot_world(applied.environment, WorldRequest(backend="local", allow_host=True, base_dir=tmp_path))
    async with await world.start() as sandbox:
        assert await sandbox.read_file("keep.txt") == b"k"
        gone = await sandbox.exec(["test", "-e", "docs/Documentation.md"])
        assert not gone.ok
    rewritten = apply([DeleteFile(path="keep.txt"), WriteFile(path="keep.txt", content="new")], Transcript(), env)
    assert rewritten.environment is not None and rewritten.environment.remove == []
