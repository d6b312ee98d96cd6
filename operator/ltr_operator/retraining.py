"""Pure builders of the retraining children: the CronJob and the job's least-privilege identity."""

from __future__ import annotations

from typing import Any

from ltr.contract import EXIT_INSUFFICIENT, EXIT_REJECTED, format_duration
from ltr_operator import constants as c
from ltr_operator.objects import Inputs, Owner, labels, meta, names, store_volume
from ltr_operator.rbac import RETRAIN_JOB_RULES
from ltr_operator.security import SIDECAR_SECURITY_CONTEXT
from ltr_operator.spec import LTRServingSpec, RetrainingSpec


def build_retrain_result(owner: Owner) -> dict[str, Any]:
    """The ConfigMap the job writes its JSON result into (key RETRAIN_RESULT_KEY). The operator owns only
    its metadata (server-side apply never touches `data`); the job owns `data`."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": meta(owner, names(owner.name)["retrain_result"], "retrain"),
    }


def build_retrain_rbac(owner: Owner) -> list[dict[str, Any]]:
    """ServiceAccount + Role + RoleBinding letting the job write its result ConfigMap and nothing else:
    not the LTRServing (whose spec chooses images and predictors), not other ConfigMaps."""
    name = names(owner.name)["retrain"]
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": meta(owner, name, "retrain"),
            "automountServiceAccountToken": True,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": meta(owner, name, "retrain"),
            "rules": [
                {**rule, "resourceNames": [names(owner.name)["retrain_result"]]} for rule in RETRAIN_JOB_RULES
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": meta(owner, name, "retrain"),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": owner.namespace}],
        },
    ]


DEFAULT_TIME_BUDGET_S = 300.0


def time_budget(r: RetrainingSpec) -> str:
    """`retraining.timeBudget`, else 5m capped at 80% of `activeDeadlineSeconds` (so an object valid
    before the field existed keeps a job that ends in time)."""
    if r.time_budget is not None:
        return r.time_budget
    return format_duration(min(DEFAULT_TIME_BUDGET_S, 0.8 * r.active_deadline_s))


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
        "--time-budget",
        time_budget(r),
        "--encoder",
        r.encoder,
        "--min-samples",
        str(r.min_samples),
        "--min-kendall-tau",
        str(r.min_kendall_tau),
        "--report-configmap",
        f"{owner.namespace}/{names(owner.name)['retrain_result']}",
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
        "securityContext": dict(SIDECAR_SECURITY_CONTEXT),
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
                        "volumes": [store_volume(owner, spec), {"name": "tmp", "emptyDir": {}}],
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
        "metadata": meta(owner, name, "retrain"),
        "spec": cron_spec,
    }
