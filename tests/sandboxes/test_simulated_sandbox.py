"""The simulated backend answers from the recording, then from a simulator, and says which."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from sandboxes.base import SandboxSpec
from sandboxes.errors import SandboxError
from sandboxes.simulated import RecordedCall, SimulatedSandbox


async def test_recorded_then_simulated_with_provenance() -> None:
    seen: list[tuple[str, list[tuple[str, str]]]] = []

    async def simulator(command: str, history: Sequence[tuple[str, str]]) -> str:
        seen.append((command, list(history)))
        return f"simulated output of {command}"

    recorded = [RecordedCall("ls", "a\nb\n"), RecordedCall("git status", "clean"), RecordedCall("ls", "a\nb\nc\n")]
    async with await SimulatedSandbox.start(SandboxSpec(), recorded=recorded, simulator=simulator) as sb:
        first = await sb.exec("ls")
        assert (first.stdout, first.provenance) == ("a\nb\n", "recorded")
        assert (await sb.exec("git   status")).stdout == "clean"  # whitespace-insensitive match
        assert (await sb.exec("ls")).stdout == "a\nb\nc\n"  # second recording, in order
        new = await sb.exec("rm -rf tests")
        assert new.provenance == "simulated"
        assert new.stdout == "simulated output of rm -rf tests"
        assert new.exit_code is None
        assert seen[0][1][-1] == ("ls", "a\nb\nc\n")  # the simulator sees the history
        snap = await sb.snapshot()
    async with await SimulatedSandbox.start(SandboxSpec(), from_snapshot=snap, simulator=simulator) as fork:
        assert (await fork.exec("ls")).provenance == "simulated"  # recordings were consumed before the snapshot


async def test_without_simulator_new_commands_are_an_error() -> None:
    async with await SimulatedSandbox.start(SandboxSpec(files={"f": "x"})) as sb:
        assert await sb.read_file("f") == b"x"
        with pytest.raises(SandboxError, match="no recorded output"):
            await sb.exec("whoami")
