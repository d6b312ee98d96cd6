"""Parse and type an LTRServing spec (a plain dict from the API) into frozen dataclasses.

Defaults mirror crds/ltrserving.yaml (the API server applies them; parsing applies them again so an
object that skipped defaulting behaves the same). The CEL cross-field rules are re-checked here too.
Invalid input raises SpecError with every problem and its field path - never another exception.
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ltr.contract import parse_duration

ENGINES = ("vllm", "sglang", "tgi", "custom")
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
POLICIES = ("ltr", "fcfs")
STRATEGIES = ("AllAtOnce", "Canary")
SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer")
ACCESS_MODES = ("ReadWriteMany", "ReadWriteOnce")
ENCODERS = ("minilm", "none")  # retraining.encoder: values of `ltr predictor retrain --encoder`
VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


class SpecError(ValueError):
    """The spec cannot work; `problems` lists 'field.path: what is wrong' strings."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class ModelSpec:
    name: str
    engine: str = "vllm"
    image: str | None = None
    image_pull_policy: str = "IfNotPresent"
    command: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    port: int = 8000
    health_path: str = "/health"
    startup_timeout_s: int = 1800
    resources: Mapping[str, Any] = field(default_factory=dict)
    env: tuple[Mapping[str, Any], ...] = ()
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Mapping[str, Any], ...] = ()
    shm_size: str = "1Gi"
    security_context: Mapping[str, Any] | None = None  # None: the operator's hardened default


@dataclass(frozen=True)
class StoreSpec:
    existing_claim: str | None = None
    size: str = "5Gi"
    storage_class: str | None = None
    access_mode: str = "ReadWriteMany"


@dataclass(frozen=True)
class RolloutSpec:
    strategy: str = "AllAtOnce"
    canary_replicas: int = 1
    min_kendall_tau: float = 0.0
    analysis_window_s: float = 600.0
    min_online_samples: int = 100


@dataclass(frozen=True)
class PredictorSpec:
    version: str | None = None
    store: StoreSpec | None = None
    rollout: RolloutSpec = field(default_factory=RolloutSpec)


@dataclass(frozen=True)
class SchedulerSpec:
    policy: str = "ltr"
    starvation_threshold: str = "5s"
    max_queue_length: int = 1024
    max_concurrency: int | str = "auto"
    max_tokens_limit: int = 4096
    max_prompt_bytes: int = 32768
    priority_bands: int = 1
    scoring_window_ms: int = 2


@dataclass(frozen=True)
class RetrainingSpec:
    enabled: bool = False
    schedule: str = "0 */6 * * *"
    time_zone: str | None = None
    window: str = "24h"
    time_budget: str | None = None  # None: DEFAULT_TIME_BUDGET_S, capped at 80% of active_deadline_s
    encoder: str = "minilm"  # what `retrain --backbone auto` may choose over the fast ranker; "none"
    min_samples: int = 1000
    min_kendall_tau: float = 0.3
    auto_promote: bool = False
    active_deadline_s: int = 3600
    resources: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SidecarSpec:
    image: str | None = None
    image_pull_policy: str = "IfNotPresent"
    grpc_port: int = 50051
    http_port: int = 8080
    admin_port: int = 50052
    metrics_port: int = 9090
    record_prompts: bool = False
    send_priority: bool = False
    drain_grace_s: int = 30
    config_poll_s: float = 2.0
    resources: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class NetworkPolicySpec:
    enabled: bool = True
    clients: tuple[Mapping[str, Any], ...] = ()  # NetworkPolicyPeers allowed to the data ports; () = any


@dataclass(frozen=True)
class ServiceSpec:
    type: str = "ClusterIP"
    annotations: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LTRServingSpec:
    model: ModelSpec
    replicas: int = 1
    predictor: PredictorSpec = field(default_factory=PredictorSpec)
    scheduler: SchedulerSpec = field(default_factory=SchedulerSpec)
    retraining: RetrainingSpec = field(default_factory=RetrainingSpec)
    sidecar: SidecarSpec = field(default_factory=SidecarSpec)
    service: ServiceSpec = field(default_factory=ServiceSpec)
    network_policy: NetworkPolicySpec = field(default_factory=NetworkPolicySpec)
    pod_annotations: Mapping[str, str] = field(default_factory=dict)
    service_account_name: str | None = None
    image_pull_secrets: tuple[str, ...] = ()


class _Reader:
    """Typed, path-aware access to one mapping; problems accumulate in a shared list."""

    def __init__(self, data: Any, path: str, problems: list[str]) -> None:
        self.path, self.problems = path, problems
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            problems.append(f"{path}: expected an object, got {type(data).__name__}")
            data = {}
        self.data = data

    def _bad(self, key: str, what: str) -> None:
        self.problems.append(f"{self.path}.{key}: {what}")

    def sub(self, key: str) -> _Reader:
        return _Reader(self.data.get(key), f"{self.path}.{key}", self.problems)

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def str(
        self,
        key: str,
        default: Any = None,
        choices: tuple[str, ...] = (),
        pattern: re.Pattern[str] | None = None,
    ) -> Any:
        value = self.data.get(key)
        if value is None:
            return default
        if not isinstance(value, str) or not value:
            self._bad(key, f"expected a non-empty string, got {value!r}")
            return default
        if choices and value not in choices:
            self._bad(key, f"{value!r} is not one of {', '.join(choices)}")
            return default
        if pattern is not None and not pattern.match(value):
            self._bad(key, f"{value!r} does not match {pattern.pattern}")
            return default
        return value

    def int(self, key: builtins.str, default: int, lo: int | None = None, hi: int | None = None) -> int:
        value = self.data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            self._bad(key, f"expected an integer, got {value!r}")
            return default
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            self._bad(key, f"{value} is outside [{lo}, {hi}]")
            return default
        return value

    def num(self, key: builtins.str, default: float, lo: float, hi: float) -> float:
        value = self.data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            self._bad(key, f"expected a number, got {value!r}")
            return default
        if not lo <= value <= hi:
            self._bad(key, f"{value} is outside [{lo}, {hi}]")
            return default
        return float(value)

    def bool(self, key: builtins.str, default: bool) -> bool:
        value = self.data.get(key, default)
        if not isinstance(value, bool):
            self._bad(key, f"expected true or false, got {value!r}")
            return default
        return value

    def duration(self, key: builtins.str, default: builtins.str) -> builtins.str:
        value = self.str(key, default)
        try:
            parse_duration(value)
        except ValueError as exc:
            self._bad(key, str(exc))
            return default
        return value

    def strings(self, key: builtins.str) -> tuple[builtins.str, ...]:
        value = self.data.get(key) or []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self._bad(key, "expected a list of strings")
            return ()
        return tuple(value)

    def objects(self, key: builtins.str) -> tuple[Mapping[builtins.str, Any], ...]:
        value = self.data.get(key) or []
        if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
            self._bad(key, "expected a list of objects")
            return ()
        return tuple(value)

    def mapping(self, key: builtins.str, values: type = object) -> Mapping[builtins.str, Any]:
        value = self.data.get(key) or {}
        if not isinstance(value, Mapping) or not all(isinstance(v, values) for v in value.values()):
            self._bad(key, "expected an object" + (" of strings" if values is str else ""))
            return {}
        return dict(value)


def parse_spec(spec: Any) -> LTRServingSpec:
    """Typed spec with defaults applied; SpecError lists every problem found."""
    problems: list[str] = []
    root = _Reader(spec, "spec", problems)
    m = root.sub("model")
    if not m.has("name"):
        problems.append("spec.model.name: required (the model to serve)")
    model = ModelSpec(
        name=m.str("name", ""),
        engine=m.str("engine", "vllm", ENGINES),
        image=m.str("image"),
        image_pull_policy=m.str("imagePullPolicy", "IfNotPresent", PULL_POLICIES),
        command=m.strings("command"),
        args=m.strings("args"),
        port=m.int("port", 8000, 1, 65535),
        health_path=m.str("healthPath", "/health", pattern=re.compile(r"^/")),
        startup_timeout_s=m.int("startupTimeoutSeconds", 1800, 10, 86400),
        resources=m.mapping("resources"),
        env=m.objects("env"),
        node_selector=m.mapping("nodeSelector", str),
        tolerations=m.objects("tolerations"),
        shm_size=m.str("shmSize", "1Gi"),
        security_context=m.mapping("securityContext") if m.has("securityContext") else None,
    )
    p = root.sub("predictor")
    store = None
    if p.has("store"):
        s = p.sub("store")
        store = StoreSpec(
            existing_claim=s.str("existingClaim"),
            size=s.str("size", "5Gi"),
            storage_class=s.str("storageClassName"),
            access_mode=s.str("accessMode", "ReadWriteMany", ACCESS_MODES),
        )
        if s.has("existingClaim") and s.has("size"):
            problems.append("spec.predictor.store: set either existingClaim or size, not both")
    r = p.sub("rollout")
    rollout = RolloutSpec(
        strategy=r.str("strategy", "AllAtOnce", STRATEGIES),
        canary_replicas=r.int("canaryReplicas", 1, 1),
        min_kendall_tau=r.num("minKendallTau", 0.0, -1.0, 1.0),
        analysis_window_s=parse_duration(r.duration("analysisWindow", "10m")),
        min_online_samples=r.int("minOnlineSamples", 100, 10),
    )
    predictor = PredictorSpec(version=p.str("version", pattern=VERSION_RE), store=store, rollout=rollout)
    sc = root.sub("scheduler")
    concurrency = sc.data.get("maxConcurrency", "auto")
    if concurrency != "auto" and (
        isinstance(concurrency, bool) or not isinstance(concurrency, int) or not 1 <= concurrency <= 4096
    ):
        problems.append(
            f'spec.scheduler.maxConcurrency: must be "auto" or an integer in [1, 4096], got {concurrency!r}'
        )
        concurrency = "auto"
    scheduler = SchedulerSpec(
        policy=sc.str("policy", "ltr", POLICIES),
        starvation_threshold=sc.duration("starvationThreshold", "5s"),
        max_queue_length=sc.int("maxQueueLength", 1024, 1, 1_000_000),
        max_concurrency=concurrency,
        max_tokens_limit=sc.int("maxTokensLimit", 4096, 1),
        max_prompt_bytes=sc.int("maxPromptBytes", 32768, 1024, 64 * 1024 * 1024),
        priority_bands=sc.int("priorityBands", 1, 1, 16),
        scoring_window_ms=sc.int("scoringWindowMs", 2, 0, 1000),
    )
    rt = root.sub("retraining")
    retraining = RetrainingSpec(
        enabled=rt.bool("enabled", False),
        schedule=rt.str("schedule", "0 */6 * * *"),
        time_zone=rt.str("timeZone"),
        window=rt.duration("window", "24h"),
        time_budget=rt.duration("timeBudget", "5m") if "timeBudget" in rt.data else None,
        encoder=rt.str("encoder", "minilm", choices=ENCODERS),
        min_samples=rt.int("minSamples", 1000, 10),
        min_kendall_tau=rt.num("minKendallTau", 0.3, -1.0, 1.0),
        auto_promote=rt.bool("autoPromote", False),
        active_deadline_s=rt.int("activeDeadlineSeconds", 3600, 60),
        resources=rt.mapping("resources"),
    )
    sd = root.sub("sidecar")
    sidecar = SidecarSpec(
        image=sd.str("image"),
        image_pull_policy=sd.str("imagePullPolicy", "IfNotPresent", PULL_POLICIES),
        grpc_port=sd.int("grpcPort", 50051, 1, 65535),
        http_port=sd.int("httpPort", 8080, 1, 65535),
        admin_port=sd.int("adminPort", 50052, 1, 65535),
        metrics_port=sd.int("metricsPort", 9090, 1, 65535),
        record_prompts=sd.bool("recordPrompts", False),
        send_priority=sd.bool("sendPriority", False),
        drain_grace_s=sd.int("drainGracePeriodSeconds", 30, 0, 3600),
        config_poll_s=sd.num("configPollSeconds", 2.0, 0.1, 300.0),
        resources=sd.mapping("resources"),
    )
    sv = root.sub("service")
    service = ServiceSpec(
        type=sv.str("type", "ClusterIP", SERVICE_TYPES), annotations=sv.mapping("annotations", str)
    )
    npol = root.sub("networkPolicy")
    network_policy = NetworkPolicySpec(enabled=npol.bool("enabled", True), clients=npol.objects("clients"))
    secrets = tuple(str(s.get("name", "")) for s in root.objects("imagePullSecrets"))
    result = LTRServingSpec(
        model=model,
        replicas=root.int("replicas", 1, 0, 1000),
        predictor=predictor,
        scheduler=scheduler,
        retraining=retraining,
        sidecar=sidecar,
        service=service,
        network_policy=network_policy,
        pod_annotations=root.mapping("podAnnotations", str),
        service_account_name=root.str("serviceAccountName"),
        image_pull_secrets=secrets,
    )
    problems.extend(cross_field_problems(result))
    if problems:
        raise SpecError(problems)
    return result


def cross_field_problems(spec: LTRServingSpec) -> list[str]:
    """The CRD's CEL rules, re-checked (objects may reach the operator without API validation)."""
    out: list[str] = []
    ro = spec.predictor.rollout
    if ro.strategy == "Canary" and spec.replicas and ro.canary_replicas > spec.replicas:
        out.append("spec.predictor.rollout.canaryReplicas: must not exceed replicas when strategy is Canary")
    if spec.retraining.enabled and spec.predictor.store is None:
        out.append("spec.retraining.enabled: requires predictor.store (the retrain job publishes there)")
    if spec.predictor.version and spec.predictor.store is None:
        out.append("spec.predictor.version: requires predictor.store (versions are loaded from the store)")
    if spec.retraining.enabled and not spec.sidecar.record_prompts:
        out.append("spec.sidecar.recordPrompts: must be true when retraining is enabled")
    sd = spec.sidecar
    ports = (spec.model.port, sd.grpc_port, sd.http_port, sd.admin_port, sd.metrics_port)
    if len(set(ports)) != len(ports):
        out.append(
            "spec.sidecar: model.port and sidecar.grpcPort, httpPort, adminPort and metricsPort must all "
            f"differ: {ports}"
        )
    if spec.model.engine == "custom" and not (spec.model.command or spec.model.args):
        out.append("spec.model.engine: custom needs model.command or model.args")
    rt = spec.retraining
    budget = parse_duration(rt.time_budget) if rt.time_budget is not None else None
    if budget is not None and budget < 10:
        out.append(f"spec.retraining.timeBudget: must be at least 10s, got {rt.time_budget}")
    if budget is not None and budget >= rt.active_deadline_s:
        out.append(
            f"spec.retraining.timeBudget: must be shorter than retraining.activeDeadlineSeconds "
            f"({rt.time_budget} >= {rt.active_deadline_s}s)"
        )
    return out
