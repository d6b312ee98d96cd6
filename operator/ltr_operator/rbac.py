"""The Kubernetes permissions the operator uses - exactly what its code calls (tests keep this true).

OPERATOR_RULES is what a ClusterRole (or a Role per watched namespace) must grant. Each entry is
(apiGroups, resources, verbs) in ClusterRole rule shape. KOPF_RULES are the framework's own calls
(CRD and namespace discovery, Events); PEERING_RULES only when running without --standalone.
"""

from __future__ import annotations

from ltr_operator import constants as c

Rule = dict[str, list[str]]

_CHILD_VERBS = ["get", "list", "watch", "create", "patch"]

OPERATOR_RULES: list[Rule] = [
    # The custom resource: kopf watches it and patches annotations (progress, promotion record);
    # the reconciler reads it and writes the status subresource.
    {"apiGroups": [c.GROUP], "resources": [c.PLURAL], "verbs": ["get", "list", "watch", "patch"]},
    {"apiGroups": [c.GROUP], "resources": [f"{c.PLURAL}/status"], "verbs": ["get", "patch"]},
    # Children created, repaired and watched; never deleted by the operator (owner references do that).
    {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": _CHILD_VERBS},
    {"apiGroups": [""], "resources": ["services", "persistentvolumeclaims"], "verbs": _CHILD_VERBS},
    # ConfigMaps: the sidecar config, and the retrain result, removed when retraining is turned off.
    {"apiGroups": [""], "resources": ["configmaps"], "verbs": [*_CHILD_VERBS, "delete"]},
    # The admin-plane token Secret: written, never read (create, else patch; no get, list or watch).
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create", "patch"]},
    # The NetworkPolicy: removed when spec.networkPolicy.enabled turns false.
    {
        "apiGroups": ["networking.k8s.io"],
        "resources": ["networkpolicies"],
        "verbs": [*_CHILD_VERBS, "delete"],
    },
    # Retraining children: removed when spec.retraining.enabled turns false.
    {"apiGroups": ["batch"], "resources": ["cronjobs"], "verbs": [*_CHILD_VERBS, "delete"]},
    {"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": [*_CHILD_VERBS, "delete"]},
    {
        "apiGroups": ["rbac.authorization.k8s.io"],
        "resources": ["roles", "rolebindings"],
        "verbs": [*_CHILD_VERBS, "delete"],
    },
    # Pods: listed for per-pod predictor status and watched for readiness changes.
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]},
    # The LTRServing's namespace, read before recreating a missing child: no creates (403) while the
    # namespace is being deleted.
    {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get"]},
    # Events (kopf.event) on LTRServing objects.
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
]

KOPF_RULES: list[Rule] = [
    {
        "apiGroups": ["apiextensions.k8s.io"],
        "resources": ["customresourcedefinitions"],
        "verbs": ["list", "watch"],
    },
    {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]},
]

PEERING_RULES: list[Rule] = [
    {
        "apiGroups": ["kopf.dev"],
        "resources": ["clusterkopfpeerings", "kopfpeerings"],
        "verbs": ["list", "watch", "patch", "get"],
    },
]

# The Role the operator creates for each retrain job (narrowed to its result ConfigMap by resourceNames);
# RBAC lets the operator grant only what it holds itself.
RETRAIN_JOB_RULES: list[Rule] = [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "patch"]}]


def allows(rules: list[Rule], group: str, resource: str, verb: str) -> bool:
    """Whether `rules` grant `verb` on `group`/`resource` (no wildcards needed here)."""
    return any(group in r["apiGroups"] and resource in r["resources"] and verb in r["verbs"] for r in rules)
