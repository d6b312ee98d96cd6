"""Pure manifest builders: sidecar config, Deployment, engine command lines, optional children."""

from __future__ import annotations

import pytest

from ltr_operator import builders
from ltr_operator import constants as c
from tests.support.operator import INPUTS, OWNER, spec


def test_sidecar_config_keys_and_checksum_ignore_predictor_version() -> None:
    s = spec()
    a, b = builders.sidecar_config(s, "v1"), builders.sidecar_config(s, "v2")
    assert a["predictor_version"] == "v1" and a["engine_url"] == "http://127.0.0.1:8000"
    assert builders.config_checksum(a) == builders.config_checksum(b)
    other = builders.sidecar_config(spec(scheduler={"policy": "fcfs"}), "v1")
    assert builders.config_checksum(other) != builders.config_checksum(a)
    assert a["starvation_threshold"] == "5s" and a["priority_bands"] == [0]


def test_deployment_shape() -> None:
    s = spec(
        replicas=3,
        model={
            "name": "m",
            "resources": {"limits": {"nvidia.com/gpu": 1}},
            "tolerations": [{"key": "gpu", "operator": "Exists"}],
            "args": ["--x"],
        },
        podAnnotations={"team": "a"},
        imagePullSecrets=[{"name": "regcred"}],
    )
    dep = builders.build_deployment(OWNER, s, INPUTS)
    pod = dep["spec"]["template"]
    assert dep["spec"]["replicas"] == 3 and dep["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert dep["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert (
        pod["metadata"]["annotations"]["team"] == "a"
        and c.ANNOTATION_CHECKSUM in pod["metadata"]["annotations"]
    )
    engine, sidecar = pod["spec"]["containers"]
    assert engine["args"][:2] == ["--model", "m"] and engine["args"][-1] == "--x"
    assert engine["resources"]["limits"]["nvidia.com/gpu"] == 1
    # The engine listens on loopback (kubelet cannot reach it): its probes ask the sidecar.
    assert engine["args"][engine["args"].index("--host") + 1] == "127.0.0.1"
    assert engine["startupProbe"]["failureThreshold"] == 180
    # by number: kubelet resolves a named probe port among the engine container's own ports only
    assert engine["readinessProbe"]["httpGet"] == {"path": "/engine-health", "port": 8080}
    esc = engine["securityContext"]
    assert esc["allowPrivilegeEscalation"] is False and esc["capabilities"] == {"drop": ["ALL"]}
    assert esc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["spec"]["automountServiceAccountToken"] is False
    assert sidecar["livenessProbe"]["httpGet"]["path"] == "/live"
    assert {p["name"] for p in sidecar["ports"]} == {"grpc", "http", "admin", "metrics"}
    mounts = {m["name"]: m for m in sidecar["volumeMounts"]}
    assert mounts["admin-token"]["mountPath"] == "/etc/ltr-admin" and mounts["admin-token"]["readOnly"]
    assert sidecar["command"] == ["ltr"] and sidecar["args"] == [
        "sidecar",
        "--config",
        "/etc/ltr/sidecar.yaml",
    ]
    sc = sidecar["securityContext"]
    assert sc["runAsNonRoot"] and sc["readOnlyRootFilesystem"] and sc["capabilities"] == {"drop": ["ALL"]}
    assert sidecar["readinessProbe"]["httpGet"] == {"path": "/health", "port": 8080}
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["store"] == {"name": "store", "emptyDir": {}}  # no store: traces on an emptyDir
    assert volumes["dshm"]["emptyDir"]["medium"] == "Memory"
    assert pod["spec"]["imagePullSecrets"] == [{"name": "regcred"}]
    # Only the predictor version differs → identical pod template.
    again = builders.build_deployment(OWNER, s, builders.Inputs("engine:1", "sidecar:1", "v9"))
    assert again["spec"]["template"] == pod


@pytest.mark.parametrize(
    ("engine", "command", "first_args"),
    [
        ("vllm", None, ["--model", "m"]),
        ("sglang", ["python3", "-m", "sglang.launch_server"], ["--model-path", "m"]),
        ("tgi", None, ["--model-id", "m"]),
    ],
)
def test_engine_command_lines(engine: str, command: list[str] | None, first_args: list[str]) -> None:
    dep = builders.build_deployment(OWNER, spec(model={"name": "m", "engine": engine}), INPUTS)
    container = dep["spec"]["template"]["spec"]["containers"][0]
    assert container.get("command") == command and container["args"][:2] == first_args


def test_custom_engine_uses_only_the_spec_command() -> None:
    s = spec(model={"name": "m", "engine": "custom", "command": ["serve"], "args": ["--p", "9"]})
    container = builders.build_deployment(OWNER, s, INPUTS)["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["serve"] and container["args"] == ["--p", "9"]


def test_optional_children() -> None:
    kinds = [o["kind"] for o in builders.build_children(OWNER, spec(), INPUTS)]
    assert kinds == ["ConfigMap", "Secret", "NetworkPolicy", "Deployment", "Service"]
    without_policy = spec(networkPolicy={"enabled": False})
    assert "NetworkPolicy" not in [o["kind"] for o in builders.build_children(OWNER, without_policy, INPUTS)]
    assert ("NetworkPolicy", "demo") in builders.retired_children(OWNER, without_policy)
    full = spec(
        predictor={"store": {"size": "3Gi", "storageClassName": "nfs"}},
        retraining={"enabled": True, "timeZone": "Etc/UTC"},
        sidecar={"recordPrompts": True},
    )
    children = {o["kind"]: o for o in builders.build_children(OWNER, full, INPUTS)}
    assert set(children) == {
        "ConfigMap",
        "Secret",
        "NetworkPolicy",
        "PersistentVolumeClaim",
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "CronJob",
        "Deployment",
        "Service",
    }
    assert children["PersistentVolumeClaim"]["spec"]["storageClassName"] == "nfs"
    assert children["CronJob"]["spec"]["timeZone"] == "Etc/UTC"
    assert children["CronJob"]["spec"]["concurrencyPolicy"] == "Forbid"
    assert (
        "--base"
        in children["CronJob"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"]
    )
    existing = spec(predictor={"store": {"existingClaim": "mine"}})
    assert "PersistentVolumeClaim" not in [
        o["kind"] for o in builders.build_children(OWNER, existing, INPUTS)
    ]
    assert builders.retired_children(OWNER, full) == []
    assert ("CronJob", "demo-retrain") in builders.retired_children(OWNER, existing)


@pytest.mark.parametrize("engine", ["vllm", "sglang", "tgi"])
def test_named_probe_ports_resolve_in_their_own_container(engine: str) -> None:
    """kubelet looks a probe's named port up among that container's ports only."""
    pod = builders.build_deployment(OWNER, spec(model={"name": "m", "engine": engine}), INPUTS)
    for container in pod["spec"]["template"]["spec"]["containers"]:
        own = {p["name"] for p in container.get("ports") or []}
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            action = (container.get(kind) or {}).get("httpGet") or {}
            port = action.get("port")
            assert not isinstance(port, str) or port in own, (container["name"], kind, port)


def test_retrain_time_budget_defaults_below_the_job_deadline() -> None:
    from ltr.contract import parse_duration
    from ltr_operator.retraining import time_budget
    from ltr_operator.spec import RetrainingSpec

    assert time_budget(RetrainingSpec()) == "300s"  # 5m with the default 3600 s deadline
    for deadline in (60, 300, 301):  # objects from before the field existed stay valid and end in time
        assert parse_duration(time_budget(RetrainingSpec(active_deadline_s=deadline))) < deadline
    assert time_budget(RetrainingSpec(time_budget="90s", active_deadline_s=60)) == "90s"  # as written
