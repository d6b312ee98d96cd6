"""Sidecar configuration: the `sidecar.yaml` file the operator mounts, plus command-line overrides.

Keys are snake_case and match `SidecarConfig` fields exactly; an unknown key is an error (a typo must
not silently fall back to a default). Durations are Go durations ("500ms", "5s", "1h30m", "0", parsed
by `ltr.contract.parse_duration`, the project's one parser) or a YAML number of seconds.
`load_config(path, overrides)` reads YAML or JSON (JSON is YAML), applies the overrides
(e.g. from CLI flags; None values are ignored) and validates everything.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ltr.contract import parse_duration

ENGINE_APIS = ("completions", "chat")
POLICY_NAMES = ("ltr", "fcfs", "oracle")


class ConfigError(ValueError):
    """Invalid sidecar configuration (message names the key and what is expected)."""


def config_duration(value: Any, key: str) -> float:
    """Seconds from a Go duration string or a non-negative number of seconds (pure)."""
    if isinstance(value, bool):
        raise ConfigError(f"{key}: expected a duration like '5s', got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            raise ConfigError(f"{key}: {exc}") from None
    else:
        raise ConfigError(f"{key}: expected a duration like '500ms', '5s', '1h30m' or seconds, got {value!r}")
    if seconds < 0 or seconds != seconds or seconds == float("inf"):
        raise ConfigError(f"{key}: duration must be finite and >= 0, got {value!r}")
    return seconds


@dataclass
class SidecarConfig:
    """Everything the sidecar can be configured with (see docs/sidecar.md for each key)."""

    engine_url: str = "http://127.0.0.1:8000"
    engine_api: str = "completions"
    model: str = ""
    predictor_dir: str = ""
    predictor_store: str = ""
    predictor_version: str = ""
    policy: str = "ltr"
    starvation_threshold: float = 5.0  # seconds; 0 disables promotion
    max_queue: int = 1024
    max_concurrency: int | str = "auto"
    max_tokens_limit: int = 8192
    priority_bands: list[int] = field(default_factory=lambda: [0])
    scoring_window_ms: float = 2.0
    scoring_threads: int = 1
    grpc_port: int = 50051
    http_port: int = 8080
    host: str = "0.0.0.0"
    # Admin plane (PredictorAdmin): its own listener, served only when a token file is configured.
    admin_port: int = 50052
    admin_host: str = "0.0.0.0"
    admin_token_file: str = ""
    metrics_port: int = 0  # > 0: a listener that serves only GET /metrics
    trace_dir: str = ""
    record_prompts: bool = False
    send_priority: bool = False
    drain_grace_s: float = 30.0
    config_poll_s: float = 2.0
    # Limits (explicit, each named in the error a client gets).
    max_prompt_bytes: int = 32 * 1024  # ~8k tokens of English; vLLM also gets an exact token check
    engine_context_length: int = 0  # tokens; 0 = as the engine reports it (vLLM), else unchecked
    max_json_depth: int = 32
    default_max_tokens: int = 1024  # chat requests without max_tokens
    max_connections: int = 1024  # per listener; capped below the process's descriptor limit
    idle_timeout_s: float = 15.0  # a connection with no complete request for this long is closed
    body_timeout_s: float = 30.0  # a request body must arrive within this

    @property
    def auto_concurrency(self) -> bool:
        return self.max_concurrency == "auto"

    def predictor_source(self) -> tuple[str, str, str]:
        """The keys whose change triggers a predictor hot reload."""
        return (self.predictor_dir, self.predictor_store, self.predictor_version)

    def with_predictor_source(self, other: SidecarConfig) -> SidecarConfig:
        """This config with `other`'s predictor source keys (the only keys applied without a restart)."""
        return dataclasses.replace(
            self,
            predictor_dir=other.predictor_dir,
            predictor_store=other.predictor_store,
            predictor_version=other.predictor_version,
        )

    def restart_keys_changed(self, other: SidecarConfig) -> list[str]:
        """Keys that differ in `other` and take effect only on a restart."""
        return [k for k in RESTART_KEYS if getattr(other, k) != getattr(self, k)]


FIELD_NAMES = tuple(f.name for f in dataclasses.fields(SidecarConfig))
HOT_KEYS = ("predictor_dir", "predictor_store", "predictor_version")
RESTART_KEYS = tuple(k for k in FIELD_NAMES if k not in HOT_KEYS)


def _int(key: str, value: Any, minimum: int, maximum: int = 65535 * 1000) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{key}: expected an integer, got {value!r}") from None
    if not minimum <= number <= maximum:
        raise ConfigError(f"{key}: must be between {minimum} and {maximum}, got {number}")
    return number


def _bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.lower() in ("true", "1", "yes")
    raise ConfigError(f"{key}: expected true or false, got {value!r}")


def _str(key: str, value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    return str(value)


#: integer keys → (minimum, maximum)
INT_KEYS: dict[str, tuple[int, int]] = {
    "max_queue": (1, 10_000_000),
    "max_tokens_limit": (1, 10_000_000),
    "scoring_threads": (1, 256),
    "grpc_port": (0, 65535),
    "http_port": (0, 65535),
    "admin_port": (0, 65535),
    "metrics_port": (0, 65535),
    "max_prompt_bytes": (1, 64 * 1024 * 1024),
    "engine_context_length": (0, 100_000_000),
    "max_json_depth": (2, 1000),
    "default_max_tokens": (1, 10_000_000),
    "max_connections": (1, 1_000_000),
}
STR_KEYS = (
    "engine_url",
    "model",
    "predictor_dir",
    "predictor_store",
    "predictor_version",
    "host",
    "admin_host",
    "admin_token_file",
    "trace_dir",
)
BOOL_KEYS = ("record_prompts", "send_priority")
DURATION_KEYS = ("starvation_threshold", "drain_grace_s", "config_poll_s", "idle_timeout_s", "body_timeout_s")


def validate(raw: dict[str, Any]) -> SidecarConfig:
    """Build a validated SidecarConfig from a mapping of file keys (pure)."""
    unknown = sorted(set(raw) - set(FIELD_NAMES))
    if unknown:
        raise ConfigError(f"unknown config key(s) {unknown}; valid keys: {', '.join(FIELD_NAMES)}")
    c = SidecarConfig()
    for key in STR_KEYS:
        if key in raw:
            setattr(c, key, _str(key, raw[key]))
    for key, (low, high) in INT_KEYS.items():
        if key in raw:
            setattr(c, key, _int(key, raw[key], low, high))
    for key in BOOL_KEYS:
        if key in raw:
            setattr(c, key, _bool(key, raw[key]))
    for key in DURATION_KEYS:
        if key in raw:
            setattr(c, key, config_duration(raw[key], key))
    if not re.match(r"^https?://[^/\s]+", c.engine_url):
        raise ConfigError(f"engine_url: expected http(s)://host:port, got {c.engine_url!r}")
    c.engine_api = _str("engine_api", raw.get("engine_api", c.engine_api))
    if c.engine_api not in ENGINE_APIS:
        raise ConfigError(f"engine_api: expected one of {', '.join(ENGINE_APIS)}, got {c.engine_api!r}")
    c.policy = _str("policy", raw.get("policy", c.policy))
    if c.policy not in POLICY_NAMES:
        raise ConfigError(f"policy: expected one of {', '.join(POLICY_NAMES)}, got {c.policy!r}")
    mc = raw.get("max_concurrency", c.max_concurrency)
    c.max_concurrency = "auto" if mc == "auto" else _int("max_concurrency", mc, 1, 100_000)
    bands = raw.get("priority_bands", c.priority_bands)
    if not isinstance(bands, list) or not bands:
        raise ConfigError(f"priority_bands: expected a non-empty list of integers, got {bands!r}")
    c.priority_bands = sorted({_int("priority_bands", b, -1_000_000, 1_000_000) for b in bands})
    if "scoring_window_ms" in raw:
        value = raw["scoring_window_ms"]  # a bare number is milliseconds; "2ms"/"0.01s" also work
        has_unit = isinstance(value, str) and value.strip()[-1:].isalpha()
        seconds_or_ms = config_duration(value, "scoring_window_ms")
        c.scoring_window_ms = seconds_or_ms * 1000.0 if has_unit else seconds_or_ms
        if c.scoring_window_ms > 1000:
            raise ConfigError("scoring_window_ms: must be <= 1000 (milliseconds)")
    for key in ("config_poll_s", "idle_timeout_s", "body_timeout_s"):
        if getattr(c, key) <= 0:
            raise ConfigError(f"{key}: must be > 0")
    if c.default_max_tokens > c.max_tokens_limit:
        c.default_max_tokens = c.max_tokens_limit
    return c


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML/JSON config file ({} for an empty file)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {p}: {exc.strerror or exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {p} is not valid YAML/JSON: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p} must hold a mapping of keys, got {type(data).__name__}")
    return data


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> SidecarConfig:
    """File keys (if `path`), then `overrides` (None values ignored), validated."""
    raw = read_config_file(path) if path else {}
    raw.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return validate(raw)


def file_digest(path: str | Path) -> str:
    """Content hash of a config file ("" if unreadable). ConfigMap mounts swap symlinks: compare content."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return ""
