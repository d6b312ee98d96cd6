"""Pure parts of the operator: spec parsing, builders, status, promotion gate, helpers, CLI."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from ltr_operator import builders
from ltr_operator import constants as c
from ltr_operator.cli import main as cli_main
from ltr_operator.config import OperatorConfig
from ltr_operator.kube import load_credentials, path_for
from ltr_operator.podprobe import PodPredictor, pod_address
from ltr_operator.reconcile import (
    contains,
    desired_predictor,
    promotion_decision,
    removal_patch,
    resolve_images,
)
from ltr_operator.spec import SpecError, parse_duration, parse_spec
from ltr_operator.status import Problem, RetrainResult, compute_status, condition, parse_retrain_result

OWNER = builders.Owner("demo", "ns", "uid-1")
INPUTS = builders.Inputs("engine:1", "sidecar:1", "v1")
NOW = "2026-01-01T00:00:00Z"


def spec(**fields: Any) -> Any:
    return parse_spec({"model": {"name": "m"}, **fields})


@pytest.mark.parametrize(
    ("text", "seconds"), [("0", 0.0), ("5s", 5.0), ("250ms", 0.25), ("1h30m", 5400.0), ("1.5m", 90.0)]
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "-5s", "5", "5 s", "five", "5sec"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_spec_errors_list_every_problem_with_its_path() -> None:
    with pytest.raises(SpecError) as err:
        parse_spec({"model": {"port": "x", "engine": "triton"}, "replicas": True, "scheduler": [1]})
    text = str(err.value)
    for needle in (
        "spec.model.name: required",
        "spec.model.port: expected an integer",
        "spec.model.engine: 'triton' is not one of",
        "spec.replicas: expected an integer",
        "spec.scheduler: expected an object",
    ):
        assert needle in text
    with pytest.raises(SpecError, match="expected an object"):
        parse_spec("not a mapping")


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
    assert (
        engine["startupProbe"]["failureThreshold"] == 180
        and engine["readinessProbe"]["httpGet"]["port"] == 8000
    )
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
    assert kinds == ["ConfigMap", "Deployment", "Service"]
    full = spec(
        predictor={"store": {"size": "3Gi", "storageClassName": "nfs"}},
        retraining={"enabled": True, "timeZone": "Etc/UTC"},
    )
    children = {o["kind"]: o for o in builders.build_children(OWNER, full, INPUTS)}
    assert set(children) == {
        "ConfigMap",
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


def test_resolve_images_and_desired_predictor() -> None:
    cfg = OperatorConfig(sidecar_image="sc", default_engine_images={"vllm": "vllm:1"})
    assert resolve_images(spec(), cfg) == ("vllm:1", "sc")
    problem = resolve_images(spec(model={"name": "m", "engine": "tgi"}), cfg)
    assert isinstance(problem, Problem) and problem.reason == "MissingModelImage"
    problem = resolve_images(spec(), OperatorConfig(default_engine_images={"vllm": "v"}))
    assert isinstance(problem, Problem) and problem.reason == "MissingSidecarImage"
    pinned = spec(predictor={"version": "v5", "store": {"size": "1Gi"}})
    assert desired_predictor(pinned, "v9") == ("v5", "Pinned")
    assert desired_predictor(spec(), "v9") == ("v9", "Promoted")
    assert desired_predictor(spec(), "") == ("", "Bundled")
    with pytest.raises(ValueError, match="unknown engines"):
        OperatorConfig(default_engine_images={"triton": "x"})


def _result(**kw: Any) -> RetrainResult:
    return RetrainResult(
        **{
            "status": "published",
            "candidate": "v2",
            "candidate_kendall_tau": 0.5,
            "current_kendall_tau": 0.4,
            **kw,
        }
    )


def test_promotion_gate() -> None:
    auto = spec(
        predictor={"store": {"size": "1Gi"}},
        retraining={"enabled": True, "autoPromote": True, "minKendallTau": 0.3},
    )
    assert promotion_decision(auto, _result(), "v1")[0] is True
    assert promotion_decision(auto, _result(candidate_kendall_tau=0.2), "v1") == (
        False,
        "candidate v2 tau 0.2 is below retraining.minKendallTau 0.3",
    )
    assert "does not beat" in promotion_decision(auto, _result(candidate_kendall_tau=0.35), "v1")[1]
    assert promotion_decision(auto, _result(candidate_kendall_tau=0.35), "")[0] is True  # cold start
    assert promotion_decision(auto, _result(status="insufficient_data", candidate=""), "v1")[0] is False
    assert promotion_decision(auto, _result(), "v2")[0] is False  # already promoted
    manual = spec(predictor={"store": {"size": "1Gi"}}, retraining={"enabled": True})
    assert "autoPromote is off" in promotion_decision(manual, _result(), "v1")[1]
    pinned = spec(
        predictor={"version": "v1", "store": {"size": "1Gi"}},
        retraining={"enabled": True, "autoPromote": True},
    )
    assert "pins v1" in promotion_decision(pinned, _result(), "")[1]


def test_parse_retrain_result() -> None:
    assert parse_retrain_result(None) is None
    ok = parse_retrain_result(
        json.dumps(
            {
                "status": "published",
                "candidate": "v4",
                "candidate_kendall_tau": 0.6,
                "current_kendall_tau": None,
                "samples": 900,
                "reason": "ok",
            }
        )
    )
    assert ok == RetrainResult("published", "v4", 0.6, None, 900, "ok")
    for bad in ("{", json.dumps({"status": "done"}), json.dumps({"status": "published"}), "[]"):
        problem = parse_retrain_result(bad)
        assert isinstance(problem, Problem) and problem.reason == "InvalidRetrainResult"


def _deployment(
    gen: int = 1,
    observed: int = 1,
    replicas: int = 2,
    ready: int = 2,
    updated: int = 2,
    conditions: list | None = None,
) -> dict[str, Any]:
    return {
        "metadata": {"generation": gen},
        "status": {
            "observedGeneration": observed,
            "replicas": replicas,
            "readyReplicas": ready,
            "updatedReplicas": updated,
            "conditions": conditions or [],
        },
    }


def _status(**kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "generation": 3,
        "replicas": 2,
        "problem": None,
        "deployment": _deployment(),
        "pods": [],
        "desired": "",
        "source": "Bundled",
        "selector": {"a": "b"},
        "retrain": None,
        "previous": {},
        "now": NOW,
        **kw,
    }
    return compute_status(**args)


def _conds(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {cd["type"]: (cd["status"], cd["reason"]) for cd in status["conditions"]}


def test_status_ready_when_rolled_out() -> None:
    st = _status()
    assert _conds(st) == {
        "Ready": ("True", "Serving"),
        "Progressing": ("False", "RolloutComplete"),
        "Degraded": ("False", "AsExpected"),
        "PredictorReady": ("Unknown", "NoPods"),
    }
    assert st["observedGeneration"] == 3 and st["selector"] == "a=b" and st["readyReplicas"] == 2
    assert all(cd["observedGeneration"] == 3 for cd in st["conditions"])


@pytest.mark.parametrize(
    ("deployment", "replicas", "ready", "progressing", "degraded"),
    [
        (None, 2, ("False", "Creating"), ("True", "Creating"), "False"),
        (_deployment(gen=2, observed=1), 2, ("False", "RollingOut"), ("True", "RollingOut"), "False"),
        (_deployment(ready=1), 2, ("False", "RollingOut"), ("True", "RollingOut"), "False"),
        (_deployment(replicas=3), 2, ("False", "RollingOut"), ("True", "RollingOut"), "False"),
        (
            _deployment(
                conditions=[{"type": "Progressing", "reason": "ProgressDeadlineExceeded", "message": "x"}]
            ),
            2,
            ("False", "RolloutStuck"),
            ("False", "RolloutStuck"),
            "True",
        ),
        (
            _deployment(conditions=[{"type": "ReplicaFailure", "status": "True", "message": "quota"}]),
            2,
            ("False", "ReplicaFailure"),
            ("False", "ReplicaFailure"),
            "True",
        ),
        (
            _deployment(replicas=0, ready=0, updated=0),
            0,
            ("False", "ScaledToZero"),
            ("False", "ScaledToZero"),
            "False",
        ),
    ],
)
def test_status_rollout_states(
    deployment: Any, replicas: int, ready: tuple, progressing: tuple, degraded: str
) -> None:
    conds = _conds(_status(deployment=deployment, replicas=replicas))
    assert (
        conds["Ready"] == ready and conds["Progressing"] == progressing and conds["Degraded"][0] == degraded
    )


def test_status_problem_and_predictor_rollout() -> None:
    st = _status(problem=Problem("InvalidSpec", "spec.x: bad"))
    assert _conds(st)["Ready"] == ("False", "InvalidSpec") and _conds(st)["Degraded"] == (
        "True",
        "InvalidSpec",
    )
    pods = [PodPredictor("p0", "v2", 0.5, 30), PodPredictor("p1", "v1"), PodPredictor("p2", error="timeout")]
    st = _status(pods=pods, desired="v2", source="Pinned", previous={"predictor": {"current": "v1"}})
    assert _conds(st)["PredictorReady"] == ("False", "PredictorRollingOut")
    assert _conds(st)["Ready"] == ("False", "PredictorRollingOut")
    assert st["predictor"]["current"] == "v1" and st["predictor"]["podsOnCurrent"] == 1
    assert st["predictor"]["pods"][2]["error"] == "timeout"
    st = _status(pods=[PodPredictor("p0", ""), PodPredictor("p1", "")])
    assert _conds(st)["PredictorReady"] == ("True", "BundledPredictor")
    st = _status(pods=[PodPredictor("p0", error="down")])
    assert _conds(st)["PredictorReady"] == ("Unknown", "SidecarsUnreachable")
    assert _conds(st)["Ready"][0] == "True"  # unreachable sidecars do not block Ready (e.g. NetworkPolicy)


def test_status_records_retrain_results() -> None:
    st = _status(retrain=_result(time="2026-01-01T01:00:00Z", samples=500, reason="better"))
    pred = st["predictor"]
    assert (
        pred["candidate"] == "v2" and pred["candidateKendallTau"] == 0.5 and pred["lastRetrainSamples"] == 500
    )
    assert pred["lastRetrainResult"] == "published" and pred["lastRetrainTime"] == "2026-01-01T01:00:00Z"
    promoted = _status(retrain=_result(), desired="v2", source="Promoted")
    assert "candidate" not in promoted["predictor"]
    invalid = _status(retrain=Problem("InvalidRetrainResult", "bad json"))
    assert invalid["predictor"]["lastRetrainResult"] == "invalid"


def test_condition_keeps_transition_time_while_status_holds() -> None:
    first = condition("Ready", True, "Serving", "ok", 1, NOW, [])
    same = condition("Ready", True, "Serving", "ok", 2, "2026-02-02T00:00:00Z", [first])
    flipped = condition("Ready", False, "RollingOut", "x", 2, "2026-02-02T00:00:00Z", [first])
    assert same["lastTransitionTime"] == NOW and flipped["lastTransitionTime"] == "2026-02-02T00:00:00Z"


def test_contains_and_removal_patch() -> None:
    assert contains({"a": 1, "b": [{"x": 1}]}, {"a": 1, "b": [{"x": 1, "default": 2}], "extra": 3})
    assert not contains({"b": [{"x": 1}]}, {"b": [{"x": 1}, {"x": 2}]})
    assert contains({"env": [], "sel": {}}, {}) and contains({"port": 80}, {"port": "80"})
    assert not contains({"a": {"b": 1}}, {"a": None})
    assert removal_patch({"a": 1, "b": {"c": 1, "d": 2}}, {"b": {"c": 1}}) == {
        "b": {"c": 1, "d": None},
        "a": None,
    }


def test_pod_address() -> None:
    running = {"metadata": {"name": "p"}, "status": {"phase": "Running", "podIP": "10.0.0.7"}}
    assert pod_address(running, 50051) == "10.0.0.7:50051"
    assert pod_address({"status": {"phase": "Running", "podIP": "fd00::1"}}, 1) == "[fd00::1]:1"
    assert pod_address({"status": {"phase": "Pending"}}, 1) is None
    assert pod_address({"metadata": {"deletionTimestamp": "x"}, "status": running["status"]}, 1) is None


def test_kubeconfig_loading(tmp_path: Path) -> None:
    ca = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n").decode()
    path = tmp_path / "config"
    path.write_text(
        yaml.safe_dump(
            {
                "current-context": "b",
                "contexts": [
                    {"name": "a", "context": {"cluster": "c1", "user": "u1"}},
                    {"name": "b", "context": {"cluster": "c2", "user": "u2"}},
                ],
                "clusters": [
                    {"name": "c1", "cluster": {"server": "https://one"}},
                    {
                        "name": "c2",
                        "cluster": {"server": "https://two:6443/", "certificate-authority-data": ca},
                    },
                ],
                "users": [{"name": "u1", "user": {}}, {"name": "u2", "user": {"token": "tok"}}],
            }
        )
    )
    creds = load_credentials(str(path))
    assert (
        creds.server == "https://two:6443" and creds.token == "tok" and "BEGIN CERTIFICATE" in creds.ca_data
    )
    with pytest.raises(ValueError, match="cannot use kubeconfig"):
        load_credentials(str(tmp_path / "missing"))
    assert path_for("Deployment", "ns", "d", "status") == "/apis/apps/v1/namespaces/ns/deployments/d/status"
    assert path_for("ConfigMap", "ns") == "/api/v1/namespaces/ns/configmaps"


def test_cli_render_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = tmp_path / "x.yaml"
    manifest.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "ltrserving.dev/v1alpha1",
                "kind": "LTRServing",
                "metadata": {"name": "x"},
                "spec": {"model": {"name": "m"}},
            }
        )
    )
    assert (
        cli_main(["render", str(manifest), "--sidecar-image", "s:1", "--default-engine-image", "vllm=v:1"])
        == 0
    )
    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    assert [d["kind"] for d in docs] == ["ConfigMap", "Deployment", "Service"]
    assert cli_main(["render", str(manifest)]) == 2
    assert "MissingModelImage" in capsys.readouterr().err
    manifest.write_text("spec: {model: {}}\nmetadata: {name: x}\n")
    assert cli_main(["render", str(manifest), "--sidecar-image", "s"]) == 2
    assert "spec.model.name: required" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli_main(["--default-engine-image", "nonsense"])
    assert "expected ENGINE=IMAGE" in capsys.readouterr().err
