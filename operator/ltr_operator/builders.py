"""Pure manifest builders: (owner identity, typed spec, resolved inputs) → Kubernetes objects as dicts.

No I/O. Every child carries the owner reference and the same labels. The Deployment's pod template
carries a checksum of the sidecar config WITHOUT predictor_version, so a predictor rollout changes
only the ConfigMap (the sidecars hot-reload it) and never restarts the engine pods.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

import yaml

from ltr.contract import format_duration, parse_duration
from ltr_operator import constants as c
from ltr_operator.objects import Inputs, Owner, labels, meta, names, owner_reference, selector, store_volume
from ltr_operator.retraining import build_cronjob, build_retrain_rbac, build_retrain_result, retrain_args
from ltr_operator.security import (
    ADMIN_DIR,
    ADMIN_TOKEN_KEY,
    SIDECAR_SECURITY_CONTEXT,
    SIDECAR_USER,
    admin_secret,
    engine_security_context,
    network_policy,
)
from ltr_operator.spec import LTRServingSpec

LOOPBACK = "127.0.0.1"
ENGINE_HEALTH_PATH = "/engine-health"  # the sidecar's view of the loopback engine (kubelet cannot reach it)

__all__ = [
    "SIDECAR_USER",
    "Inputs",
    "Owner",
    "build_children",
    "build_configmap",
    "build_cronjob",
    "build_deployment",
    "build_retrain_rbac",
    "build_retrain_result",
    "build_service",
    "labels",
    "names",
    "owner_reference",
    "retired_children",
    "retrain_args",
    "selector",
    "sidecar_config",
]


def sidecar_config(spec: LTRServingSpec, predictor_version: str) -> dict[str, Any]:
    """The sidecar's sidecar.yaml (the contract keys, snake_case)."""
    store = spec.predictor.store is not None
    return {
        "engine_url": f"http://127.0.0.1:{spec.model.port}",
        "engine_api": "completions",
        "model": spec.model.name,
        "predictor_dir": "",  # "" = no explicit artifact dir: load predictor_version from the store
        "predictor_store": c.PREDICTOR_DIR if store else "",
        "predictor_version": predictor_version,
        "policy": spec.scheduler.policy,
        "starvation_threshold": format_duration(parse_duration(spec.scheduler.starvation_threshold)),
        "max_queue": spec.scheduler.max_queue_length,
        "max_concurrency": spec.scheduler.max_concurrency,
        "max_tokens_limit": spec.scheduler.max_tokens_limit,
        "priority_bands": list(range(spec.scheduler.priority_bands)),
        "scoring_window_ms": spec.scheduler.scoring_window_ms,
        "scoring_threads": 1,  # one torch thread: fastest for the small rankers, leaves cores to the engine
        "grpc_port": spec.sidecar.grpc_port,
        "http_port": spec.sidecar.http_port,
        "host": "0.0.0.0",
        "admin_port": spec.sidecar.admin_port,
        "admin_host": "0.0.0.0",
        "admin_token_file": f"{ADMIN_DIR}/{ADMIN_TOKEN_KEY}",
        "metrics_port": spec.sidecar.metrics_port,
        "max_prompt_bytes": spec.scheduler.max_prompt_bytes,
        "max_json_depth": 32,
        "default_max_tokens": min(1024, spec.scheduler.max_tokens_limit),
        "max_connections": 1024,
        "idle_timeout_s": 15.0,
        "body_timeout_s": 30.0,
        "engine_context_length": 0,  # learnt from the engine (vLLM reports max_model_len)
        "trace_dir": c.TRACE_DIR,
        "record_prompts": spec.sidecar.record_prompts,
        "send_priority": spec.sidecar.send_priority,
        "drain_grace_s": spec.sidecar.drain_grace_s,
        "config_poll_s": spec.sidecar.config_poll_s,
    }


def config_checksum(config: dict[str, Any]) -> str:
    """sha256 of the sidecar config minus predictor_version (hot-reloaded, must not roll pods)."""
    rolled = {k: v for k, v in config.items() if k != "predictor_version"}
    return hashlib.sha256(json.dumps(rolled, sort_keys=True).encode()).hexdigest()


def build_configmap(owner: Owner, spec: LTRServingSpec, inputs: Inputs) -> dict[str, Any]:
    config = sidecar_config(spec, inputs.predictor_version)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": meta(owner, names(owner.name)["configmap"], "sidecar-config"),
        "data": {c.CONFIG_KEY: yaml.safe_dump(config, sort_keys=True)},
    }


def engine_command(spec: LTRServingSpec) -> tuple[list[str], list[str]]:
    """(command, args) of the engine container; spec args are appended to the engine defaults."""
    m = spec.model
    port = str(m.port)
    defaults: dict[str, tuple[list[str], list[str]]] = {
        # Loopback: only the sidecar (same pod) reaches the engine; nothing bypasses the queue.
        "vllm": ([], ["--model", m.name, "--served-model-name", m.name, "--host", LOOPBACK, "--port", port]),
        "sglang": (
            ["python3", "-m", "sglang.launch_server"],
            ["--model-path", m.name, "--served-model-name", m.name, "--host", LOOPBACK, "--port", port],
        ),
        "tgi": ([], ["--model-id", m.name, "--hostname", LOOPBACK, "--port", port]),
        "custom": ([], []),
    }
    command, args = defaults[m.engine]
    return list(m.command) or command, args + list(m.args)


def _http_probe(path: str, port: int | str, period: int, failures: int, delay: int = 0) -> dict[str, Any]:
    probe: dict[str, Any] = {
        "httpGet": {"path": path, "port": port},
        "periodSeconds": period,
        "timeoutSeconds": 3,
        "failureThreshold": failures,
    }
    if delay:
        probe["initialDelaySeconds"] = delay
    return probe


def _engine_container(spec: LTRServingSpec, inputs: Inputs) -> dict[str, Any]:
    m = spec.model
    command, args = engine_command(spec)
    container: dict[str, Any] = {
        "name": "engine",
        "image": inputs.engine_image,
        "imagePullPolicy": m.image_pull_policy,
        "args": args,
        "ports": [{"name": "engine", "containerPort": m.port, "protocol": "TCP"}],
        "env": [dict(e) for e in m.env],
        "resources": dict(m.resources),
        # The engine listens on loopback, out of kubelet's reach: its probes ask the sidecar, which
        # probes the engine every 2 s (ENGINE_HEALTH_PATH answers 200 while that probe succeeds).
        # By number: kubelet resolves a probe's named port among this container's ports only (found
        # on the cluster tier: port "http" left the engine unready forever).
        "startupProbe": _http_probe(
            ENGINE_HEALTH_PATH, spec.sidecar.http_port, 10, max(1, math.ceil(m.startup_timeout_s / 10))
        ),
        "readinessProbe": _http_probe(ENGINE_HEALTH_PATH, spec.sidecar.http_port, 5, 3),
        "livenessProbe": _http_probe(ENGINE_HEALTH_PATH, spec.sidecar.http_port, 10, 6),
        "securityContext": engine_security_context(spec),
        "volumeMounts": [{"name": "dshm", "mountPath": "/dev/shm"}],
    }
    if command:
        container["command"] = command
    return container


def _sidecar_container(spec: LTRServingSpec, inputs: Inputs) -> dict[str, Any]:
    s = spec.sidecar
    return {
        "name": "ltr-sidecar",
        "image": inputs.sidecar_image,
        "imagePullPolicy": s.image_pull_policy,
        "command": ["ltr"],
        "args": ["sidecar", "--config", f"{c.CONFIG_DIR}/{c.CONFIG_KEY}"],
        "ports": [
            {"name": "grpc", "containerPort": s.grpc_port, "protocol": "TCP"},
            {"name": "http", "containerPort": s.http_port, "protocol": "TCP"},
            {"name": "admin", "containerPort": s.admin_port, "protocol": "TCP"},
            {"name": "metrics", "containerPort": s.metrics_port, "protocol": "TCP"},
        ],
        "env": [
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "HOME", "value": "/tmp"},
        ],
        "resources": dict(s.resources),
        "readinessProbe": _http_probe("/health", s.http_port, 5, 3),
        # /live, not /health: an engine outage makes the sidecar unready, never restarts it.
        "livenessProbe": _http_probe("/live", s.http_port, 10, 6, delay=10),
        "securityContext": dict(SIDECAR_SECURITY_CONTEXT),
        "volumeMounts": [
            {"name": "config", "mountPath": c.CONFIG_DIR, "readOnly": True},
            {"name": "admin-token", "mountPath": ADMIN_DIR, "readOnly": True},
            {"name": "store", "mountPath": c.STORE_MOUNT},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }


def build_deployment(owner: Owner, spec: LTRServingSpec, inputs: Inputs) -> dict[str, Any]:
    config = sidecar_config(spec, inputs.predictor_version)
    pod_labels = labels(owner, "engine")
    annotations = {**spec.pod_annotations, c.ANNOTATION_CHECKSUM: config_checksum(config)}
    pod_spec: dict[str, Any] = {
        "containers": [_engine_container(spec, inputs), _sidecar_container(spec, inputs)],
        "terminationGracePeriodSeconds": spec.sidecar.drain_grace_s + 15,
        "enableServiceLinks": False,
        "nodeSelector": dict(spec.model.node_selector),
        "tolerations": [dict(t) for t in spec.model.tolerations],
        "imagePullSecrets": [{"name": n} for n in spec.image_pull_secrets],
        # The pods call no Kubernetes API: no ServiceAccount token in them.
        "automountServiceAccountToken": False,
        # The admin token is readable by the sidecar's group only (the Secret volume's files are 0440).
        "securityContext": {"fsGroup": SIDECAR_USER, "fsGroupChangePolicy": "OnRootMismatch"},
        "volumes": [
            {"name": "config", "configMap": {"name": names(owner.name)["configmap"]}},
            {
                "name": "admin-token",
                "secret": {"secretName": names(owner.name)["admin"], "defaultMode": 0o440},
            },
            store_volume(owner, spec),
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": spec.model.shm_size}},
            {"name": "tmp", "emptyDir": {}},
        ],
    }
    if spec.service_account_name:
        pod_spec["serviceAccountName"] = spec.service_account_name
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta(owner, names(owner.name)["deployment"], "engine"),
        "spec": {
            "replicas": spec.replicas,
            "selector": {"matchLabels": selector(owner)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "progressDeadlineSeconds": spec.model.startup_timeout_s + 300,
            "template": {"metadata": {"labels": pod_labels, "annotations": annotations}, "spec": pod_spec},
        },
    }


def build_service(owner: Owner, spec: LTRServingSpec) -> dict[str, Any]:
    metadata = meta(owner, names(owner.name)["service"], "engine")
    if spec.service.annotations:
        metadata["annotations"] = dict(spec.service.annotations)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata,
        "spec": {
            "type": spec.service.type,
            "selector": selector(owner),
            "ports": [
                {
                    "name": "grpc",
                    "port": spec.sidecar.grpc_port,
                    "targetPort": "grpc",
                    "protocol": "TCP",
                    "appProtocol": "grpc",
                },
                {
                    "name": "http",
                    "port": spec.sidecar.http_port,
                    "targetPort": "http",
                    "protocol": "TCP",
                    "appProtocol": "http",
                },
                # Only GET /metrics listens there: the metrics port never serves the API.
                {
                    "name": "metrics",
                    "port": spec.sidecar.metrics_port,
                    "targetPort": "metrics",
                    "protocol": "TCP",
                },
            ],
        },
    }


def build_pvc(owner: Owner, spec: LTRServingSpec) -> dict[str, Any] | None:
    """The store's PersistentVolumeClaim, or None when there is no store or it already exists."""
    store = spec.predictor.store
    if store is None or store.existing_claim:
        return None
    pvc_spec: dict[str, Any] = {
        "accessModes": [store.access_mode],
        "resources": {"requests": {"storage": store.size}},
    }
    if store.storage_class:
        pvc_spec["storageClassName"] = store.storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": meta(owner, names(owner.name)["pvc"], "store"),
        "spec": pvc_spec,
    }


def build_admin_secret(owner: Owner, inputs: Inputs) -> dict[str, Any]:
    """The admin-plane token the sidecars require (and the operator sends)."""
    return admin_secret(meta(owner, names(owner.name)["admin"], "admin-token"), inputs.admin_token)


def build_network_policy(owner: Owner, spec: LTRServingSpec, inputs: Inputs) -> dict[str, Any]:
    """Clients to the data ports, the operator to the admin port, nothing to the engine."""
    return network_policy(
        meta(owner, names(owner.name)["netpol"], "network-policy"), selector(owner), spec, inputs.operator
    )


def build_children(owner: Owner, spec: LTRServingSpec, inputs: Inputs) -> list[dict[str, Any]]:
    """Every child this spec needs, in creation order (config and secret before the pods that mount them)."""
    children: list[dict[str, Any]] = [build_configmap(owner, spec, inputs), build_admin_secret(owner, inputs)]
    if spec.network_policy.enabled:
        children.append(build_network_policy(owner, spec, inputs))
    pvc = build_pvc(owner, spec)
    if pvc is not None:
        children.append(pvc)
    if spec.retraining.enabled:
        children += [
            build_retrain_result(owner),
            *build_retrain_rbac(owner),
            build_cronjob(owner, spec, inputs),
        ]
    children += [build_deployment(owner, spec, inputs), build_service(owner, spec)]
    return children


def retired_children(owner: Owner, spec: LTRServingSpec) -> list[tuple[str, str]]:
    """(kind, name) of optional children this spec no longer wants (the PVC is kept: it holds data)."""
    retired = [] if spec.network_policy.enabled else [("NetworkPolicy", names(owner.name)["netpol"])]
    if spec.retraining.enabled:
        return retired
    name = names(owner.name)["retrain"]
    return [
        *retired,
        ("CronJob", name),
        ("RoleBinding", name),
        ("Role", name),
        ("ServiceAccount", name),
        ("ConfigMap", names(owner.name)["retrain_result"]),
    ]
