"""The simulated backend with a model playing the environment."""

from __future__ import annotations

import re

from sandboxes.base import SandboxSpec
from sandboxes.simulated import SimulatedSandbox
from tests.factories import precommit_incident
from tools.env_simulator import model_simulator, recorded_calls
from tools.models.scripted import ScriptedModel
from tools.transcript import Transcript


async def test_recorded_commands_replay_and_new_ones_are_simulated_by_the_model() -> None:
    incident = precommit_incident()
    recorded = recorded_calls(incident.transcript)
    assert recorded[2].command == "mypy 2>&1 | tail -3" and "Found 258 errors" in recorded[2].output

    def respond(context: Transcript, _i: int) -> str:
        prompt = context.messages[-1].text
        # The description, the history and the command are each quoted as data, with random nonces.
        command = re.search(r"Next command:\n<(command-[0-9a-f]{16})>\ngit status --short\n</\1>", prompt)
        history = re.search(r"<(history-[0-9a-f]{16})>\n(.*?)\n</\1>", prompt, re.S)
        environment = re.search(r"<(environment-[0-9a-f]{16})>\nThe typedcalc repository", prompt)
        assert command and history and environment
        assert "$ mypy 2>&1 | tail -3" in history.group(2)
        return " M pyproject.toml"

    model = ScriptedModel(respond=respond)
    simulator = model_simulator(model, environment="The typedcalc repository with a pre-commit hook.")
    async with await SimulatedSandbox.start(SandboxSpec(), recorded=recorded, simulator=simulator) as sb:
        for call in recorded[:3]:
            result = await sb.exec(call.command)
            assert result.provenance == "recorded" and result.stdout == call.output
        new = await sb.exec("git status --short")
    assert new.provenance == "simulated"
    assert new.stdout == " M pyproject.toml"
    assert model.meter.calls and model.meter.calls[0].n == 1
