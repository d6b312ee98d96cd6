"""Pure helpers of the test node agent: what kubelet computes from a pod spec (no I/O).

Quantities, downward-API field and resource references, `$(VAR)` expansion, container environment
(envFrom, env with configMap/secret/field/resource references, the `kubernetes` Service variables),
pod phase and conditions from container states. Names and semantics follow kubelet.
"""

from __future__ import annotations

import base64
import math
import re
from decimal import Decimal
from typing import Any

_QUANTITY = re.compile(r"^([+-]?[0-9.]+)([eE][+-]?[0-9]+|[a-zA-Z]*)$")
_SUFFIX: dict[str, Decimal | int] = {
    "": 1,
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
}
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")


class SpecError(ValueError):
    """The pod cannot be started as written (kubelet's CreateContainerConfigError)."""


def quantity(value: str | int | float) -> Decimal:
    """A resource.Quantity as a Decimal ("500m" → 0.5, "1Gi" → 1073741824)."""
    m = _QUANTITY.match(str(value).strip())
    if not m:
        raise SpecError(f"invalid quantity {value!r}")
    number, suffix = Decimal(m.group(1)), m.group(2)
    if suffix[:1] in "eE" and suffix[1:].lstrip("+-").isdigit():
        return number * Decimal(10) ** int(suffix[1:])
    if suffix not in _SUFFIX:
        raise SpecError(f"invalid quantity suffix in {value!r}")
    return number * Decimal(_SUFFIX[suffix])  # exact for both int and Decimal factors


def _lookup(pod: dict[str, Any], path: str) -> Any:
    meta, spec, status = pod.get("metadata", {}), pod.get("spec", {}), pod.get("status", {})
    m = re.match(r"^metadata\.(labels|annotations)\['(.+)'\]$", path)
    if m:
        return (meta.get(m.group(1)) or {}).get(m.group(2), "")
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        "status.hostIP": status.get("hostIP"),
        "status.podIP": status.get("podIP"),
        "status.hostIPs": ",".join(i["ip"] for i in status.get("hostIPs") or []),
        "status.podIPs": ",".join(i["ip"] for i in status.get("podIPs") or []),
    }
    if path in simple:
        return simple[path] or ""
    if path in ("metadata.labels", "metadata.annotations"):
        items = meta.get(path.split(".")[1]) or {}
        return "\n".join(f'{k}="{v}"' for k, v in sorted(items.items()))
    raise SpecError(f"unsupported fieldRef fieldPath {path!r}")


def field_ref(pod: dict[str, Any], ref: dict[str, Any]) -> str:
    return str(_lookup(pod, ref["fieldPath"]))


def resource_ref(
    pod: dict[str, Any], ref: dict[str, Any], container: str, allocatable: dict[str, str]
) -> str:
    """limits.cpu / requests.memory / … of a container, as kubelet renders it (ceil(value / divisor))."""
    name = ref.get("containerName") or container
    spec = next(
        (
            c
            for c in pod["spec"].get("containers", []) + pod["spec"].get("initContainers", [])
            if c["name"] == name
        ),
        None,
    )
    if spec is None:
        raise SpecError(f"resourceFieldRef: no container {name!r}")
    kind, _, resource = ref["resource"].partition(".")
    resources = spec.get("resources") or {}
    value = (resources.get(kind) or {}).get(resource)
    if value is None and kind == "requests":
        value = (resources.get("limits") or {}).get(resource)
    if value is None:
        value = allocatable.get(resource, "0")
    divisor = quantity(ref.get("divisor") or "1")
    return str(math.ceil(quantity(value) / divisor))


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion: known names are replaced, unknown ones kept, `$$` escapes."""
    out, i = [], 0
    while i < len(text):
        if text[i] == "$" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            if nxt == "(":
                end = text.find(")", i + 2)
                if end != -1:
                    name = text[i + 2 : end]
                    out.append(env[name] if name in env else text[i : end + 1])
                    i = end + 1
                    continue
        out.append(text[i])
        i += 1
    return "".join(out)


def service_env(service_ip: str, port: int = 443) -> dict[str, str]:
    """The `kubernetes` Service variables kubelet gives every container (enableServiceLinks or not)."""
    return {
        "KUBERNETES_SERVICE_HOST": service_ip,
        "KUBERNETES_SERVICE_PORT": str(port),
        "KUBERNETES_SERVICE_PORT_HTTPS": str(port),
        "KUBERNETES_PORT": f"tcp://{service_ip}:{port}",
        f"KUBERNETES_PORT_{port}_TCP": f"tcp://{service_ip}:{port}",
        f"KUBERNETES_PORT_{port}_TCP_PROTO": "tcp",
        f"KUBERNETES_PORT_{port}_TCP_PORT": str(port),
        f"KUBERNETES_PORT_{port}_TCP_ADDR": service_ip,
    }


def _source_data(obj: dict[str, Any] | None, secret: bool) -> dict[str, str]:
    if obj is None:
        return {}
    data = (
        {k: base64.b64decode(v).decode(errors="replace") for k, v in (obj.get("data") or {}).items()}
        if secret
        else dict(obj.get("data") or {})
    )
    if secret:
        data.update(obj.get("stringData") or {})
    return data


def container_env(
    pod: dict[str, Any],
    container: dict[str, Any],
    objects: dict[tuple[str, str], Any],
    services: dict[str, str],
    allocatable: dict[str, str],
) -> dict[str, str]:
    """The container's environment; `objects[(kind, name)]` holds the referenced ConfigMaps/Secrets
    (None when absent). Raises SpecError for a missing required reference."""
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        kind, ref = (
            ("ConfigMap", source["configMapRef"])
            if "configMapRef" in source
            else ("Secret", source["secretRef"])
        )
        obj = objects.get((kind, ref["name"]))
        if obj is None and not ref.get("optional"):
            raise SpecError(f'{kind.lower()} "{ref["name"]}" not found')
        for key, value in _source_data(obj, kind == "Secret").items():
            name = source.get("prefix", "") + key
            if _ENV_NAME.match(name):
                env[name] = value
    for var in container.get("env") or []:
        name, value_from = var["name"], var.get("valueFrom")
        if value_from is None:
            env[name] = expand(var.get("value", ""), {**services, **env})
        elif "fieldRef" in value_from:
            env[name] = field_ref(pod, value_from["fieldRef"])
        elif "resourceFieldRef" in value_from:
            env[name] = resource_ref(pod, value_from["resourceFieldRef"], container["name"], allocatable)
        else:
            kind, ref = (
                ("ConfigMap", value_from["configMapKeyRef"])
                if "configMapKeyRef" in value_from
                else ("Secret", value_from["secretKeyRef"])
            )
            data = _source_data(objects.get((kind, ref["name"])), kind == "Secret")
            if ref["key"] in data:
                env[name] = data[ref["key"]]
            elif not ref.get("optional"):
                raise SpecError(
                    f"couldn't find key {ref['key']} in {kind} {pod['metadata']['namespace']}/{ref['name']}"
                )
    return {**services, **env}


def referenced_objects(container: dict[str, Any]) -> set[tuple[str, str]]:
    """(kind, name) of every ConfigMap/Secret the container's environment refers to."""
    refs: set[tuple[str, str]] = set()
    for source in container.get("envFrom") or []:
        if "configMapRef" in source:
            refs.add(("ConfigMap", source["configMapRef"]["name"]))
        if "secretRef" in source:
            refs.add(("Secret", source["secretRef"]["name"]))
    for var in container.get("env") or []:
        vf = var.get("valueFrom") or {}
        if "configMapKeyRef" in vf:
            refs.add(("ConfigMap", vf["configMapKeyRef"]["name"]))
        if "secretKeyRef" in vf:
            refs.add(("Secret", vf["secretKeyRef"]["name"]))
    return refs


def pod_phase(statuses: list[dict[str, Any]], restart_policy: str, init_done: bool) -> str:
    """kubelet's getPhase over container statuses."""
    if not init_done:
        return "Pending"
    running = waiting = stopped = succeeded = 0
    for s in statuses:
        state = s.get("state") or {}
        if state.get("running") is not None:
            running += 1
        elif state.get("terminated") is not None:
            stopped += 1
            succeeded += state["terminated"].get("exitCode") == 0
        elif (s.get("lastState") or {}).get("terminated") is not None:
            stopped += 1
        else:
            waiting += 1
    if waiting:
        return "Pending"
    if running:
        return "Running"
    if stopped:
        if restart_policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        if restart_policy == "Never":
            return "Failed"
        return "Running"
    return "Pending"


def condition(
    ctype: str, ok: bool, now: str, previous: list[dict[str, Any]], reason: str = "", message: str = ""
) -> dict[str, Any]:
    """A pod condition; lastTransitionTime kept while its status holds."""
    status = "True" if ok else "False"
    old = next((c for c in previous if c.get("type") == ctype), None)
    since = (
        old["lastTransitionTime"]
        if old and old.get("status") == status and old.get("lastTransitionTime")
        else now
    )
    # reason/message always present: null removes a stale one in the strategic merge patch
    return {
        "type": ctype,
        "status": status,
        "lastProbeTime": None,
        "lastTransitionTime": since,
        "reason": reason or None,
        "message": message or None,
    }
