"""Model clients behind one protocol (`ModelClient.generate`), resolved from
``provider/name`` strings by `get_model`."""

from tools.models.base import CallRecord, ModelClient, ModelConfigError, ModelError, Pricing, Usage, UsageMeter
from tools.models.registry import get_model, providers, register_provider

__all__ = [
    "CallRecord",
    "ModelClient",
    "ModelConfigError",
    "ModelError",
    "Pricing",
    "Usage",
    "UsageMeter",
    "get_model",
    "providers",
    "register_provider",
]
