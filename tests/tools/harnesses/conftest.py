"""One real Docker sandbox per test module for the harness profiles: the Debian base
image, with the workspace at a session-style path (/home/dev/proj). Each test works in
its own subdirectory, so the container is started once per module, not per test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from sandboxes.base import Sandbox, SandboxSpec
from sandboxes.docker import DockerSandbox
from tools.toolmap import PathMap, ToolMapping, ToolOutcome
from tools.transcript import ToolUseBlock

in_module_loop = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sandbox(base_image: str) -> AsyncIterator[Sandbox]:
    spec = SandboxSpec(image=base_image, workdir="/workspace", shell=["bash", "-c"])
    async with await DockerSandbox.start(spec) as box:
        yield box


class Session:
    """A fresh directory under the session root, and helpers to call tools in it."""

    def __init__(self, sandbox: Sandbox, mapping: ToolMapping, root: str) -> None:
        self.sandbox, self.mapping, self.root = sandbox, mapping, root
        self.run = mapping.run_context(sandbox)

    def path(self, rel: str) -> str:
        return f"{self.root}/{rel}"

    async def write(self, rel: str, text: str) -> None:
        await self.sandbox.write_file(self.path(rel), text)

    async def read(self, rel: str) -> str:
        return (await self.sandbox.read_file(self.path(rel))).decode()

    async def call(self, name: str, **call_input: Any) -> ToolOutcome:
        from tools.toolmap import run_call

        return await run_call(
            self.mapping, ToolUseBlock(id=f"t-{uuid.uuid4().hex[:8]}", name=name, input=call_input), self.run
        )


def session(sandbox: Sandbox, profile_name: str, *, session_root: str | None = None) -> Session:
    """A directory of its own in the module's sandbox, mapped as the session's working
    directory (`session_root` is what the transcript calls it; default: the real path)."""
    from tools.harnesses import get_profile

    real = f"/workspace/{uuid.uuid4().hex[:10]}"
    paths = PathMap(session_root=session_root or real, sandbox_root=real)
    mapping = get_profile(profile_name).mapping(paths=paths)
    return Session(sandbox, mapping, session_root or real)


@pytest.fixture
def make_session(sandbox: Sandbox) -> Any:
    async def make(profile_name: str, *, session_root: str | None = None) -> Session:
        s = session(sandbox, profile_name, session_root=session_root)
        real = s.mapping.paths.sandbox_root
        result = await sandbox.exec(["mkdir", "-p", real])
        assert result.ok, result.output
        return s

    return make
