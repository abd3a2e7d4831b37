"""Harness profiles: each agent harness's tools mapped onto sandbox operations.

A transcript from a real agent was produced by a harness (Claude Code, Inspect, the
Codex CLI, SWE-agent, OpenHands, or an application using Anthropic's tool types). To
replay its calls, or to let a resampled subject act in the rebuilt world, each tool
must do what the harness did: Claude Code's ``Edit`` replaces a string in a file and
answers with a ``cat -n`` snippet; Inspect's ``text_editor`` with ``command: create``
creates a file (it is not a shell command). A `HarnessProfile` is that mapping, named
and tested, plus the harness's tool schemas for logs that do not record them.

`choose_profile(transcript, named)` picks the profile: the one an incident names
(``environment.harness``), else the one the importer recorded
(``metadata["harness"]``), else the first whose detector recognises the transcript's
format and tool names; None when nothing fits (then `ToolMapping.infer` guesses).
`reconstruct_tools` fills in the tool schemas of a log that lacks them and notes that
the prefix is a reconstruction.
"""

from __future__ import annotations

import posixpath

from tools.harnesses import anthropic_tools, claude_code, codex, inspect_harness, swe_agent
from tools.harnesses.base import HarnessError, HarnessProfile
from tools.transcript import ToolSpec, Transcript

PROFILES: dict[str, HarnessProfile] = {
    p.name: p
    for p in (
        claude_code.PROFILE,
        codex.PROFILE,
        swe_agent.OPENHANDS,
        swe_agent.MINI_SWE_AGENT,
        swe_agent.SWE_AGENT,
        anthropic_tools.PROFILE,
        inspect_harness.PROFILE,
    )
}
"""Every profile, in detection order (the most specific detectors first)."""

RECONSTRUCTION_KEY = "prefix_reconstruction"
"""Transcript metadata: notes on what of the resample prefix was reconstructed."""

_CWD_KEYS = ("cwd", "workdir", "working_directory")


def profile_names() -> list[str]:
    return list(PROFILES)


def get_profile(name: str) -> HarnessProfile:
    """The profile called `name` (or one of its aliases)."""
    wanted = name.strip().lower()
    for profile in PROFILES.values():
        if wanted == profile.name or wanted in profile.aliases:
            return profile
    raise HarnessError(f"unknown harness {name!r}; known harnesses: {', '.join(PROFILES)}")


def detect_profile(transcript: Transcript) -> HarnessProfile | None:
    """The profile a transcript's format, metadata and tool names point at."""
    recorded = transcript.metadata.get("harness")
    if isinstance(recorded, str):
        try:
            return get_profile(recorded)
        except HarnessError:
            pass
    for profile in PROFILES.values():
        if profile.detect(transcript):
            return profile
    return None


def choose_profile(transcript: Transcript | None, named: str | None = None) -> HarnessProfile | None:
    """The profile named by the incident, else the detected one (see the module doc)."""
    if named is not None:
        return get_profile(named)
    return detect_profile(transcript) if transcript is not None else None


def session_workdir(transcript: Transcript | None) -> str | None:
    """The working directory the session ran in, when its log recorded one."""
    if transcript is None:
        return None
    for key in _CWD_KEYS:
        value = transcript.metadata.get(key)
        if isinstance(value, str) and value.startswith("/"):
            return posixpath.normpath(value)
    return None


def _lacks_schemas(transcript: Transcript) -> bool:
    if transcript.metadata.get("tools_inferred"):
        return True
    return not transcript.tools


def reconstruct_tools(transcript: Transcript, profile: HarnessProfile) -> list[str]:
    """Give a transcript whose log recorded no tool definitions the profile's (keeping
    inferred entries for tools the profile does not know, e.g. MCP tools), and record in
    ``metadata["prefix_reconstruction"]`` what the resample prefix reconstructs. Returns
    the notes added (none when the log had its own definitions)."""
    notes: list[str] = []
    if _lacks_schemas(transcript):
        known = {spec.name: spec for spec in profile.tool_specs()}
        used = [t.name for t in transcript.tools] or sorted({u.name for m in transcript.messages for u in m.tool_uses})
        rebuilt: list[ToolSpec] = []
        for name in used:
            rebuilt.append(known[name] if name in known else ToolSpec(name=name))
        unknown = [n for n in used if n not in known]
        # The harness offered its whole tool set, not only the tools this session happened to call.
        rebuilt += [spec for name, spec in known.items() if name not in used]
        transcript.tools = rebuilt
        notes.append(
            f"The log recorded no tool definitions: the resample prefix uses the {profile.name} profile's schemas "
            "(written from the harness's public documentation), which may differ from the version the session ran"
            + (f"; tools it does not describe keep an open schema: {', '.join(unknown)}" if unknown else "")
            + "."
        )
        transcript.metadata["tools_inferred"] = False
        transcript.metadata["tools_from_profile"] = profile.name
    if transcript.system is None and profile.name == "claude-code":
        notes.append(
            "Claude Code does not log its system prompt: the resample prefix has none, so the subject resamples "
            "without the harness's instructions."
        )
    if notes:
        existing = transcript.metadata.get(RECONSTRUCTION_KEY)
        kept = [n for n in existing if isinstance(n, str)] if isinstance(existing, list) else []
        transcript.metadata[RECONSTRUCTION_KEY] = kept + [n for n in notes if n not in kept]
    return notes


__all__ = [
    "PROFILES",
    "RECONSTRUCTION_KEY",
    "HarnessError",
    "HarnessProfile",
    "choose_profile",
    "detect_profile",
    "get_profile",
    "profile_names",
    "reconstruct_tools",
    "session_workdir",
]
