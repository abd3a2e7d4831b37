"""Resolve ``provider/name`` strings to model clients, Inspect-style.

Built-in providers import their SDK only when first used. Other packages add
providers through the ``model_forensics.models`` entry-point group, so the toolkit
never imports the layers below it.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any

from tools.models.base import ModelClient, ModelConfigError

_BUILTIN: dict[str, str] = {
    "anthropic": "tools.models.anthropic:AnthropicModel",
    "openai": "tools.models.openai:OpenAIModel",
    "llamacpp": "tools.models.llamacpp:LlamaCppModel",
    "scripted": "tools.models.scripted:ScriptedModel",
    "organism": "tools.organisms.model:OrganismModel",
}
_EXTRA: dict[str, str] = {}


def register_provider(provider: str, target: str) -> None:
    """Register ``provider`` as ``"module:Class"`` (a `ModelClient` subclass)."""
    _EXTRA[provider] = target


def _entry_point_providers() -> dict[str, str]:
    return {ep.name: ep.value for ep in entry_points(group="model_forensics.models")}


def providers() -> dict[str, str]:
    """Every known provider and where it lives."""
    return {**_BUILTIN, **_entry_point_providers(), **_EXTRA}


def get_model(model: str, **options: Any) -> ModelClient:
    """A client for ``provider/name`` (e.g. ``anthropic/claude-sonnet-4-5``,
    ``openai/llama`` with ``base_url=...``, ``llamacpp/smollm2``, ``organism/lazy-unaware``)."""
    provider, sep, name = model.partition("/")
    if not sep or not name:
        raise ModelConfigError(f"model {model!r} must look like provider/name (providers: {', '.join(providers())})")
    known = providers()
    if provider not in known:
        raise ModelConfigError(f"unknown model provider {provider!r} in {model!r}; known: {', '.join(sorted(known))}")
    module_name, _, attr = known[provider].partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except ImportError as exc:
        raise ModelConfigError(
            f"provider {provider!r} needs a package that is not installed ({exc.name}); see the README's extras"
        ) from None
    client: ModelClient = cls(name, **options)
    return client
