"""Settings read from the environment (pydantic-settings), with safe defaults.

Two groups, each read fresh where it is used (so a test or a CLI flag that sets the
variable takes effect at once):

`ParseLimits` (``FORENSICS_MAX_*``)
    How much untrusted input the importers and the incident loader accept: file sizes,
    nesting depth, YAML alias expansion, and what an ``.eval`` (zip) archive may
    declare. Sizes accept units: ``64MiB``, ``1GB``, ``500000``.

`ModelCallSettings` (``FORENSICS_MODEL_*``)
    How long one model API request may take and how many times it is tried, for every
    API-backed client (subject, investigator, judge, grader, simulator) that is not
    given its own values.

The values and their meaning are listed in SECURITY.md and the README.
"""

from __future__ import annotations

from pydantic import ByteSize, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from tools.errors import ForensicsError


class ParseLimits(BaseSettings):
    """Bounds on untrusted input (see module doc). Every field is an environment
    variable ``FORENSICS_<FIELD>`` (upper case)."""

    model_config = SettingsConfigDict(env_prefix="FORENSICS_", extra="ignore")

    max_transcript_bytes: ByteSize = Field(default=ByteSize(64 * 1024 * 1024), gt=0)
    """A transcript file (JSON, JSONL, Inspect JSON log) may be at most this large."""
    max_incident_bytes: ByteSize = Field(default=ByteSize(1024 * 1024), gt=0)
    """An incident file (YAML or JSON) may be at most this large."""
    max_depth: int = Field(default=128, ge=8)
    """Deepest nesting of lists and mappings accepted in parsed JSON or YAML."""
    max_yaml_aliases: int = Field(default=100, ge=0)
    """Most YAML alias references (``*name``) in one document."""
    max_yaml_alias_nodes: int = Field(default=10_000, ge=0)
    """Most nodes all aliases of a document may expand to together (alias bombs)."""
    max_eval_bytes: ByteSize = Field(default=ByteSize(2 * 1024 * 1024 * 1024), gt=0)
    """An ``.eval`` archive may declare at most this many uncompressed bytes in all."""
    max_eval_member_bytes: ByteSize = Field(default=ByteSize(256 * 1024 * 1024), gt=0)
    """One member of an ``.eval`` archive may be at most this large uncompressed."""
    max_eval_members: int = Field(default=100_000, ge=1)
    """Most members an ``.eval`` archive may hold."""
    max_eval_ratio: float = Field(default=200.0, gt=1.0)
    """Highest compression ratio (uncompressed / compressed) of any member larger than
    1 MiB uncompressed; zip bombs compress by a thousand or more, real logs by far less."""


class ModelCallSettings(BaseSettings):
    """Timeouts and attempts of model API calls (see module doc)."""

    model_config = SettingsConfigDict(env_prefix="FORENSICS_MODEL_", extra="ignore")

    timeout_s: float = Field(default=120.0, gt=0)
    """Seconds one request may take before it counts as failed (and is retried)."""
    attempts: int = Field(default=4, ge=1)
    """Requests in all for one call, the first included."""


class SettingsError(ForensicsError):
    """An environment variable holds a value its setting cannot take."""


def _settings_error(exc: ValidationError, prefix: str) -> SettingsError:
    err = exc.errors(include_url=False)[0]
    name = prefix + "_".join(str(p) for p in err["loc"]).upper()
    return SettingsError(f"environment variable {name}: {err['msg']} (got {err.get('input')!r})")


def parse_limits() -> ParseLimits:
    """The parse limits now in force (read from the environment)."""
    try:
        return ParseLimits()
    except ValidationError as exc:
        raise _settings_error(exc, "FORENSICS_") from None


def model_call_settings() -> ModelCallSettings:
    """The model call settings now in force (read from the environment)."""
    try:
        return ModelCallSettings()
    except ValidationError as exc:
        raise _settings_error(exc, "FORENSICS_MODEL_") from None


__all__ = ["ModelCallSettings", "ParseLimits", "SettingsError", "model_call_settings", "parse_limits"]
