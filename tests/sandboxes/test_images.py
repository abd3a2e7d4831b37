"""Registry-free images: the Debian base and cached scenario images, built offline."""

from __future__ import annotations

from typing import Any

import pytest

from sandboxes.base import SandboxSpec
from sandboxes.docker import DockerSandbox
from sandboxes.errors import ImageBuildError
from sandboxes.images import base_image_tag, build_scenario_image

pytestmark = pytest.mark.docker

REPO_FILES = {
    "pkg/__init__.py": "def add(a, b):\n    return a + b\n",
    "pyproject.toml": '[tool.mypy]\nstrict = true\nfiles = ["pkg"]\n',
}
SETUP = [
    "git init -q -b main . && git config user.email agent@example.com && git config user.name agent",
    "git add -A && git commit -qm initial",
]


def test_base_image_has_the_tools_and_user(docker: Any, base_image: str) -> None:
    assert base_image == base_image_tag()
    out = docker.containers.run(
        base_image,
        ["sh", "-c", "python3 --version && git --version && mypy --version && id && stat -c %u /workspace"],
        remove=True,
        user="1000:1000",
        network_mode="none",
    ).decode()
    assert "Python 3.11" in out
    assert "git version" in out
    assert "mypy" in out
    assert "uid=1000(agent)" in out
    assert out.strip().endswith("1000")


async def test_scenario_image_is_built_offline_and_cached(docker: Any, base_image: str) -> None:
    tag = build_scenario_image(docker, name="Tiny Repo", base=base_image, files=REPO_FILES, setup=SETUP)
    assert tag.startswith("model-forensics/scenario-tiny-repo:")
    image_id = docker.images.get(tag).id
    again = build_scenario_image(docker, name="Tiny Repo", base=base_image, files=REPO_FILES, setup=SETUP)
    assert again == tag and docker.images.get(again).id == image_id  # cache hit, no rebuild
    changed = build_scenario_image(
        docker, name="Tiny Repo", base=base_image, files={**REPO_FILES, "extra.txt": "x"}, setup=SETUP
    )
    assert changed != tag  # inputs changed: a new image

    async with await DockerSandbox.start(SandboxSpec(image=tag)) as sb:
        log = await sb.exec("git log --oneline | wc -l; stat -c %U pkg/__init__.py; mypy 2>&1 | tail -1")
        lines = log.stdout.splitlines()
        assert lines[0] == "1"
        assert lines[1] == "agent"
        assert "error" in lines[2]  # strict mypy finds the untyped function


def test_scenario_build_has_no_network(docker: Any, base_image: str) -> None:
    with pytest.raises(ImageBuildError, match="failed to build"):
        build_scenario_image(
            docker,
            name="needs-net",
            base=base_image,
            files={},
            setup=["python3 -c \"import socket; socket.create_connection(('1.1.1.1', 80), timeout=3)\""],
        )


def test_scenario_paths_must_stay_in_the_workspace(docker: Any, base_image: str) -> None:
    with pytest.raises(ImageBuildError, match="relative to the workspace"):
        build_scenario_image(docker, name="bad", base=base_image, files={"../etc/x": "y"}, setup=[])
