"""Pure manifest builders: (owner identity, typed spec, resolved inputs) → Kubernetes objects as dicts.

No I/O. Every child carries the owner reference and the same labels. The Deployment's pod template
carries a checksum of the sidecar config WITHOUT predictor_version, so a predictor rollout changes
only the ConfigMap (the sidecars hot-reload it) and never restarts the engine pods.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

import yaml

from ltr.contract import EXIT_INSUFFICIENT, EXIT_REJECTED, format_duration, parse_duration
from ltr_operator import constants as c
from ltr_operator.spec import LTRServingSpec

SIDECAR_USER = 65532
METRICS_PORT = 9090


@dataclass(frozen=True)
class Owner:
    """The LTRServing a child belongs to."""

    name: str
    namespace: str
    uid: str


@dataclass(frozen=True)
class Inputs:
    """Values resolved outside the spec (operator defaults, promotion state)."""

    engine_image: str
    sidecar_image: str
    predictor_version: str  # "" = bundled generic predictor (cold start)


def names(owner_name: str) -> dict[str, str]:
    """Child object names."""
    return {
        "deployment": owner_name,
        "service": owner_name,
        "configmap": f"{owner_name}-sidecar",
        "pvc": f"{owner_name}-store",
        "retrain": f"{owner_name}-retrain",
    }


def selector(owner: Owner) -> dict[str, str]:
    return {c.LABEL_OWNER: owner.name, c.LABEL_COMPONENT: "engine"}


def labels(owner: Owner, component: str) -> dict[str, str]:
    return {
        c.LABEL_NAME: "ltr-serving",
        c.LABEL_INSTANCE: owner.name,
        c.LABEL_COMPONENT: component,
        c.LABEL_MANAGED_BY: c.MANAGED_BY,
        c.LABEL_OWNER: owner.name,
    }


def owner_reference(owner: Owner) -> dict[str, Any]:
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.KIND,
        "name": owner.name,
        "uid": owner.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _meta(owner: Owner, name: str, component: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": owner.namespace,
        "labels": labels(owner, component),
        "ownerReferences": [owner_reference(owner)],
    }


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
        "metadata": _meta(owner, names(owner.name)["configmap"], "sidecar-config"),
        "data": {c.CONFIG_KEY: yaml.safe_dump(config, sort_keys=True)},
    }


def engine_command(spec: LTRServingSpec) -> tuple[list[str], list[str]]:
    """(command, args) of the engine container; spec args are appended to the engine defaults."""
    m = spec.model
    port = str(m.port)
    defaults: dict[str, tuple[list[str], list[str]]] = {
        "vllm": ([], ["--model", m.name, "--served-model-name", m.name, "--host", "0.0.0.0", "--port", port]),
        "sglang": (
            ["python3", "-m", "sglang.launch_server"],
            ["--model-path", m.name, "--served-model-name", m.name, "--host", "0.0.0.0", "--port", port],
        ),
        "tgi": ([], ["--model-id", m.name, "--hostname", "0.0.0.0", "--port", port]),
        "custom": ([], []),
    }
    command, args = defaults[m.engine]
    return list(m.command) or command, args + list(m.args)


def _http_probe(path: str, port: int, period: int, failures: int, delay: int = 0) -> dict[str, Any]:
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
        "startupProbe": _http_probe(m.health_path, m.port, 10, max(1, math.ceil(m.startup_timeout_s / 10))),
        "readinessProbe": _http_probe(m.health_path, m.port, 5, 3),
        "livenessProbe": _http_probe(m.health_path, m.port, 10, 6),
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
        ],
        "env": [
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "HOME", "value": "/tmp"},
        ],
        "resources": dict(s.resources),
        "readinessProbe": _http_probe("/health", s.http_port, 5, 3),
        "livenessProbe": _http_probe("/health", s.http_port, 10, 6, delay=10),
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": SIDECAR_USER,
            "runAsGroup": SIDECAR_USER,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [
            {"name": "config", "mountPath": c.CONFIG_DIR, "readOnly": True},
            {"name": "store", "mountPath": c.STORE_MOUNT},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }


def _store_volume(owner: Owner, spec: LTRServingSpec) -> dict[str, Any]:
    store = spec.predictor.store
    if store is None:
        return {"name": "store", "emptyDir": {}}  # traces only, lost with the pod
    claim = store.existing_claim or names(owner.name)["pvc"]
    return {"name": "store", "persistentVolumeClaim": {"claimName": claim}}


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
        "volumes": [
            {"name": "config", "configMap": {"name": names(owner.name)["configmap"]}},
            _store_volume(owner, spec),
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": spec.model.shm_size}},
            {"name": "tmp", "emptyDir": {}},
        ],
    }
    if spec.service_account_name:
        pod_spec["serviceAccountName"] = spec.service_account_name
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(owner, names(owner.name)["deployment"], "engine"),
        "spec": {
            "replicas": spec.replicas,
            "selector": {"matchLabels": selector(owner)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "progressDeadlineSeconds": spec.model.startup_timeout_s + 300,
            "template": {"metadata": {"labels": pod_labels, "annotations": annotations}, "spec": pod_spec},
        },
    }


def build_service(owner: Owner, spec: LTRServingSpec) -> dict[str, Any]:
    meta = _meta(owner, names(owner.name)["service"], "engine")
    if spec.service.annotations:
        meta["annotations"] = dict(spec.service.annotations)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
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
                {"name": "metrics", "port": METRICS_PORT, "targetPort": "http", "protocol": "TCP"},
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
        "metadata": _meta(owner, names(owner.name)["pvc"], "store"),
        "spec": pvc_spec,
    }


def build_retrain_rbac(owner: Owner) -> list[dict[str, Any]]:
    """ServiceAccount + Role + RoleBinding letting the job write its result annotation (this object only)."""
    name = names(owner.name)["retrain"]
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": _meta(owner, name, "retrain"),
            "automountServiceAccountToken": True,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": _meta(owner, name, "retrain"),
            "rules": [
                {
                    "apiGroups": [c.GROUP],
                    "resources": [c.PLURAL],
                    "resourceNames": [owner.name],
                    "verbs": ["get", "patch"],
                }
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": _meta(owner, name, "retrain"),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": owner.namespace}],
        },
    ]


def retrain_args(owner: Owner, spec: LTRServingSpec, base_version: str) -> list[str]:
    r = spec.retraining
    args = [
        "predictor",
        "retrain",
        "--traces",
        c.TRACE_DIR,
        "--store",
        c.PREDICTOR_DIR,
        "--window",
        r.window,
        "--min-samples",
        str(r.min_samples),
        "--min-kendall-tau",
        str(r.min_kendall_tau),
        "--report-annotation",
        f"{owner.namespace}/{owner.name}",
    ]
    return args + (["--base", base_version] if base_version else [])


def build_cronjob(owner: Owner, spec: LTRServingSpec, inputs: Inputs) -> dict[str, Any]:
    r = spec.retraining
    name = names(owner.name)["retrain"]
    container = {
        "name": "retrain",
        "image": inputs.sidecar_image,
        "imagePullPolicy": spec.sidecar.image_pull_policy,
        "command": ["ltr"],
        "args": retrain_args(owner, spec, inputs.predictor_version),
        "env": [{"name": "HOME", "value": "/tmp"}],
        "resources": dict(r.resources),
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": SIDECAR_USER,
            "runAsGroup": SIDECAR_USER,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [{"name": "store", "mountPath": c.STORE_MOUNT}, {"name": "tmp", "mountPath": "/tmp"}],
    }
    cron_spec: dict[str, Any] = {
        "schedule": r.schedule,
        "concurrencyPolicy": "Forbid",
        "startingDeadlineSeconds": 600,
        "successfulJobsHistoryLimit": 3,
        "failedJobsHistoryLimit": 3,
        "jobTemplate": {
            "metadata": {"labels": labels(owner, "retrain")},
            "spec": {
                "backoffLimit": 1,
                # "not enough traces" and "rejected by the gate" are verdicts, not crashes: no retry pod
                # (found on the real control plane: every such run ran twice).
                "podFailurePolicy": {
                    "rules": [
                        {
                            "action": "FailJob",
                            "onExitCodes": {
                                "containerName": "retrain",
                                "operator": "In",
                                "values": [EXIT_INSUFFICIENT, EXIT_REJECTED],
                            },
                        }
                    ]
                },
                "activeDeadlineSeconds": r.active_deadline_s,
                "ttlSecondsAfterFinished": 86400,
                "template": {
                    "metadata": {"labels": labels(owner, "retrain")},
                    "spec": {
                        "serviceAccountName": name,
                        "restartPolicy": "Never",
                        "containers": [container],
                        "imagePullSecrets": [{"name": n} for n in spec.image_pull_secrets],
                        "volumes": [_store_volume(owner, spec), {"name": "tmp", "emptyDir": {}}],
                    },
                },
            },
        },
    }
    if r.time_zone:
        cron_spec["timeZone"] = r.time_zone
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": _meta(owner, name, "retrain"),
        "spec": cron_spec,
    }


def build_children(owner: Owner, spec: LTRServingSpec, inputs: Inputs) -> list[dict[str, Any]]:
    """Every child this spec needs, in creation order (config before the pods that mount it)."""
    children: list[dict[str, Any]] = [build_configmap(owner, spec, inputs)]
    pvc = build_pvc(owner, spec)
    if pvc is not None:
        children.append(pvc)
    if spec.retraining.enabled:
        children += [*build_retrain_rbac(owner), build_cronjob(owner, spec, inputs)]
    children += [build_deployment(owner, spec, inputs), build_service(owner, spec)]
    return children


def retired_children(owner: Owner, spec: LTRServingSpec) -> list[tuple[str, str]]:
    """(kind, name) of optional children this spec no longer wants (the PVC is kept: it holds data)."""
    if spec.retraining.enabled:
        return []
    name = names(owner.name)["retrain"]
    return [("CronJob", name), ("RoleBinding", name), ("Role", name), ("ServiceAccount", name)]
