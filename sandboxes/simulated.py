"""The simulated backend: for worlds that cannot be rebuilt.

Commands that were recorded in the transcript get their recorded output (consumed in
order, so a command run twice gets its two outputs); anything new is answered by an
injected `OutputSimulator` (in production a model client asked to play the
environment; in tests a scripted function). Every result says which it was
(`ExecResult.provenance`), so reports never pass a simulation off as an execution.
Files live in memory. Nothing is executed, so `isolation` is ``none``.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from sandboxes.base import ExecResult, Isolation, Limits, Sandbox, SandboxSpec, SnapshotRef
from sandboxes.errors import SandboxError


@dataclass(frozen=True)
class RecordedCall:
    """A command and the output it produced in the original episode."""

    command: str
    output: str
    exit_code: int = 0


OutputSimulator = Callable[[str, Sequence[tuple[str, str]]], Awaitable[str]]
"""``async (command, history) -> output``; history is the (command, output) pairs so far."""


@dataclass
class _State:
    recorded: list[RecordedCall]
    used: list[bool]
    files: dict[str, bytes]
    history: list[tuple[str, str]] = field(default_factory=list)


_SNAPSHOTS: dict[str, _State] = {}


def _normalize(command: str) -> str:
    return " ".join(command.split())


class SimulatedSandbox(Sandbox):
    """Answers commands from a recording, then from a simulator; runs nothing."""

    backend: ClassVar[str] = "simulated"
    isolation: ClassVar[Isolation] = "none"

    def __init__(self, spec: SandboxSpec, state: _State, simulator: OutputSimulator | None) -> None:
        super().__init__(spec)
        self._state = state
        self._simulator = simulator
        self._closed = False

    @classmethod
    def describe_isolation(cls, limits: Limits | None = None) -> str:
        return (
            "nothing is executed: commands get the outputs recorded in the transcript, then a model's simulation, "
            "each marked as such; no process, file or secret of this machine is reachable"
        )

    @classmethod
    async def start(
        cls,
        spec: SandboxSpec,
        *,
        recorded: Sequence[RecordedCall] = (),
        simulator: OutputSimulator | None = None,
        from_snapshot: SnapshotRef | None = None,
        **options: Any,
    ) -> SimulatedSandbox:
        if from_snapshot is not None:
            if from_snapshot.ref not in _SNAPSHOTS:
                raise SandboxError(f"simulated snapshot {from_snapshot.ref} does not exist in this process")
            state = copy.deepcopy(_SNAPSHOTS[from_snapshot.ref])
        else:
            files = {path: content.encode() for path, content in spec.files.items()}
            state = _State(recorded=list(recorded), used=[False] * len(recorded), files=files)
        return cls(spec, state, simulator)

    async def exec(
        self,
        cmd: str | Sequence[str],
        *,
        timeout: float | None = None,
        input: str | bytes | None = None,
        env: Mapping[str, str] | None = None,
        workdir: str | None = None,
    ) -> ExecResult:
        if self._closed:
            raise SandboxError("exec on a closed sandbox")
        command = cmd if isinstance(cmd, str) else " ".join(cmd)
        key = _normalize(command)
        for i, call in enumerate(self._state.recorded):
            if not self._state.used[i] and _normalize(call.command) == key:
                self._state.used[i] = True
                self._state.history.append((command, call.output))
                return ExecResult(exit_code=call.exit_code, stdout=call.output, stderr="", provenance="recorded")
        if self._simulator is None:
            raise SandboxError(f"the simulated sandbox has no recorded output for {command!r} and no simulator to ask")
        output = await self._simulator(command, list(self._state.history))
        self._state.history.append((command, output))
        return ExecResult(exit_code=None, stdout=output, stderr="", provenance="simulated")

    async def read_file(self, path: str) -> bytes:
        try:
            return self._state.files[path]
        except KeyError:
            raise SandboxError(f"no such file in the simulated sandbox: {path}") from None

    async def write_file(self, path: str, data: str | bytes) -> None:
        self._state.files[path] = data.encode() if isinstance(data, str) else data

    async def snapshot(self) -> SnapshotRef:
        ref = uuid.uuid4().hex
        _SNAPSHOTS[ref] = copy.deepcopy(self._state)
        return SnapshotRef(backend=self.backend, ref=ref, workdir=self.spec.workdir)

    async def close(self) -> None:
        self._closed = True
