"""The service's configuration: where its state lives, who may call it, and how much.

Read from, in increasing precedence: the defaults below, a YAML config file
(``--config FILE`` or ``FORENSICS_SERVE_CONFIG``), environment variables, and the
flags of ``forensics serve``:

- ``FORENSICS_SERVE_DIR`` — the state directory (default ``runs/serve``): the batch
  database the executor keeps the queue in, one run directory per investigation.
- ``FORENSICS_API_TOKENS`` — bearer tokens, comma-separated, each added with the
  default per-token limits (``token_defaults``); the config file's ``tokens:`` list
  gives tokens names and limits of their own.
- ``FORENSICS_WEBHOOK_SECRET`` — the shared secret webhook bodies are signed with.
- ``FORENSICS_SERVE_MAX_REQUEST_BYTES`` — the largest request body accepted.

A config file looks like::

    dir: /srv/forensics
    tokens:
      - name: monitoring-pipeline
        token_sha256: 9f86d0...        # or `token:` in clear; sha256 keeps it out of the file
        max_concurrent: 8              # queued + running investigations at once
        budget_dollars: 500            # total spend of its investigations
      - name: ops
        token: s3cret
        admin: true                    # sees every token's investigations
    webhook_secret: change-me
    webhook_hosts: [hooks.example.com] # callback URLs must point at these hosts
    defaults: {planner: protocol, n: 50}
    max_budget: {samples: 20000, tool_calls: 80, dollars: 25}

Nothing here lets a request choose where files go or whether an untrusted incident
may run on the host: the sandbox backend is the operator's choice (``sandbox_backend``)
and the service never passes ``allow_host``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ByteSize,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from investigator.service.errors import ServiceConfigError
from tools.budget import BudgetLimits
from tools.formats.base import decode_utf8, read_bounded, safe_yaml_load
from tools.models.base import Pricing

CONFIG_FILE_CAP = 1024 * 1024
TOKEN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

PlannerName = Literal["protocol", "llm", "cot-only"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


def token_digest(token: str) -> str:
    """The SHA-256 of a token, as hex: how tokens are compared and stored."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class TokenPolicy(_Model):
    """One API token: its name (what its investigations are labelled with; never the
    token itself), the token or its SHA-256, and its limits."""

    name: str
    token: SecretStr | None = None
    token_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    max_concurrent: int | None = Field(default=None, ge=1)
    """Most investigations of this token queued or running at once (None: no limit)."""
    budget_dollars: float | None = Field(default=None, ge=0)
    """Most dollars all of this token's investigations may spend together (None: no limit)."""
    admin: bool = False
    """An admin token sees and cancels every token's investigations."""

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not TOKEN_NAME.match(value):
            raise ValueError("a token name is 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
        return value

    @model_validator(mode="after")
    def _one_secret(self) -> TokenPolicy:
        if (self.token is None) == (self.token_sha256 is None):
            raise ValueError("give exactly one of `token` or `token_sha256`")
        if self.token is not None and len(self.token.get_secret_value()) < 8:
            raise ValueError("a token must be at least 8 characters long")
        return self

    @property
    def digest(self) -> str:
        if self.token_sha256 is not None:
            return self.token_sha256
        assert self.token is not None
        return token_digest(self.token.get_secret_value())

    def matches(self, presented: str) -> bool:
        """Whether `presented` is this token (constant-time on the digests)."""
        return hmac.compare_digest(token_digest(presented), self.digest)


class TokenDefaults(_Model):
    """Limits of tokens given without their own (``FORENSICS_API_TOKENS``)."""

    max_concurrent: int | None = Field(default=32, ge=1)
    budget_dollars: float | None = Field(default=None, ge=0)


class Defaults(_Model):
    """What an investigation gets when the request does not say."""

    planner: PlannerName = "protocol"
    n: int = Field(default=50, ge=1)
    budget: BudgetLimits = Field(default_factory=lambda: BudgetLimits(tool_calls=60, samples=5000))


class MaxBudget(_Model):
    """The most a request may ask for; larger requests are refused (422)."""

    n: int = Field(default=1000, ge=1)
    samples: int = Field(default=20000, ge=0)
    tool_calls: int = Field(default=100, ge=0)
    tokens: int | None = Field(default=None, ge=0)
    dollars: float | None = Field(default=None, ge=0)


class ServiceConfig(_Model):
    """Everything the service needs (see module doc)."""

    dir: Path = Path("runs/serve")
    tokens: list[TokenPolicy] = Field(default_factory=list)
    token_defaults: TokenDefaults = Field(default_factory=TokenDefaults)
    webhook_secret: SecretStr | None = None
    webhook_hosts: list[str] | None = None
    """Hosts callback URLs may point at (exact names, or ``*.example.com``); None: any."""
    webhook_attempts: int = Field(default=6, ge=1, le=20)
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    webhook_backoff_s: float = Field(default=1.0, ge=0)
    """First retry after this long, doubling up to a minute."""
    max_request_bytes: ByteSize = Field(default=ByteSize(64 * 1024 * 1024), gt=0)
    defaults: Defaults = Field(default_factory=Defaults)
    max_budget: MaxBudget = Field(default_factory=MaxBudget)
    sandbox_backend: Literal["docker", "local", "simulated"] | None = None
    """The sandbox backend asked for (None: the policy's choice — Docker, or the local
    sandbox only for trusted worlds). Untrusted incidents never get the host: the
    service does not pass ``allow_host``."""
    subject_pricing: dict[str, Pricing] = Field(default_factory=dict)
    """Prices per subject model, by exact model string or by prefix ending in ``/``
    (``organism/``), for subjects whose client does not know its own."""
    model_providers: list[str] = Field(default_factory=lambda: ["anthropic", "openai", "organism", "llamacpp"])
    """Subject model providers a request may name."""
    executor: Literal["local", "ray"] = "local"
    address: str | None = None
    """The Ray cluster's address for ``executor: ray`` (``auto``, ``HOST:PORT``, ``ray://...``)."""
    workers: int | None = Field(default=None, ge=1)
    """Investigations run at once (default: the executor backend's)."""
    max_attempts: int = Field(default=3, ge=1)
    poll_interval_s: float = Field(default=0.5, gt=0)
    judge: str | None = None
    """A judge model for the reports' grades (default: offline structural grading)."""
    organism_dirs: list[str] = Field(default_factory=list)
    scenario_dirs: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_tokens(self) -> ServiceConfig:
        names = [t.name for t in self.tokens]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"token names must be unique; repeated: {', '.join(dupes)}")
        digests = [t.digest for t in self.tokens]
        if len(set(digests)) != len(digests):
            raise ValueError("the same token is listed twice")
        return self

    def pricing_for(self, model: str) -> Pricing | None:
        """The configured price of a subject model (exact string first, then the longest prefix)."""
        if model in self.subject_pricing:
            return self.subject_pricing[model]
        prefixes = [p for p in self.subject_pricing if p.endswith("/") and model.startswith(p)]
        return self.subject_pricing[max(prefixes, key=len)] if prefixes else None

    def find_token(self, presented: str) -> TokenPolicy | None:
        """The policy of a presented bearer token (every token is compared, so the time
        taken says nothing about which one matched)."""
        found = None
        for policy in self.tokens:
            if policy.matches(presented):
                found = policy
        return found


class _Environment(BaseSettings):
    """The environment variables the service reads (see module doc)."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    serve_dir: Path | None = Field(default=None, validation_alias="FORENSICS_SERVE_DIR")
    serve_config: Path | None = Field(default=None, validation_alias="FORENSICS_SERVE_CONFIG")
    api_tokens: SecretStr | None = Field(default=None, validation_alias="FORENSICS_API_TOKENS")
    webhook_secret: SecretStr | None = Field(default=None, validation_alias="FORENSICS_WEBHOOK_SECRET")
    max_request_bytes: ByteSize | None = Field(default=None, validation_alias="FORENSICS_SERVE_MAX_REQUEST_BYTES")


def _read_file(path: Path) -> dict[str, Any]:
    from tools.errors import FormatError

    try:
        raw = read_bounded(path, CONFIG_FILE_CAP, what="a service config file")
        data = safe_yaml_load(decode_utf8(raw, source=str(path)), source=str(path))
    except FormatError as exc:
        raise ServiceConfigError(str(exc)) from None
    except OSError as exc:
        raise ServiceConfigError(f"{path}: cannot read the service config file ({exc.strerror})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ServiceConfigError(f"{path}: a service config file is a mapping (dir, tokens, webhook_secret, ...)")
    return data


def _env_tokens(value: str, defaults: TokenDefaults) -> list[dict[str, Any]]:
    tokens = []
    for raw in value.split(","):
        token = raw.strip()
        if not token:
            continue
        tokens.append(
            {
                "name": f"token-{token_digest(token)[:8]}",
                "token": token,
                "max_concurrent": defaults.max_concurrent,
                "budget_dollars": defaults.budget_dollars,
            }
        )
    return tokens


def load_config(config_file: str | Path | None = None, **overrides: Any) -> ServiceConfig:
    """The service's configuration (see module doc); `overrides` are flags (None: not given)."""
    try:
        env = _Environment()
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        raise ServiceConfigError(f"environment variable {err['loc'][0]}: {err['msg']}") from None
    path = Path(config_file) if config_file is not None else env.serve_config
    data = _read_file(path) if path is not None else {}
    where = str(path) if path is not None else "the service configuration"
    if env.serve_dir is not None:
        data["dir"] = str(env.serve_dir)
    if env.webhook_secret is not None:
        data["webhook_secret"] = env.webhook_secret.get_secret_value()
    if env.max_request_bytes is not None:
        data["max_request_bytes"] = int(env.max_request_bytes)
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        defaults = TokenDefaults.model_validate(data.get("token_defaults") or {})
        if env.api_tokens is not None:
            data["tokens"] = [*(data.get("tokens") or []), *_env_tokens(env.api_tokens.get_secret_value(), defaults)]
        return ServiceConfig.model_validate(data)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        raise ServiceConfigError(f"{where}: field `{loc}`: {err['msg']}") from None
