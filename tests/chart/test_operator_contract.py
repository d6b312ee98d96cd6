"""The chart and the operator agree: the rendered `ltr operator` arguments parse with the operator's own
parser, the ServiceMonitor selects the Services its builders create, and every example, rendered into
children by `ltr operator render` with the chart's defaults, gives strictly valid, non-root workloads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from ltr_operator import builders, cli
from ltr_operator.config import OperatorConfig
from ltr_operator.spec import parse_spec
from tests.support.chart import EXAMPLES_DIR, Renderer, by_kind, ci_values_files, pod_specs

K8S_VERSION = "1.37.0"
IMAGE_UID = 65532  # USER of sidecar/Dockerfile and operator/Dockerfile
VALUE_SETS = [None, *ci_values_files()]
VALUE_IDS = ["default", *[p.stem for p in ci_values_files()]]


def operator_container(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    (deployment,) = by_kind(manifests, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


@pytest.mark.parametrize("values_file", VALUE_SETS, ids=VALUE_IDS)
def test_rendered_args_parse_with_the_operator_cli(render: Renderer, values_file: Path | None) -> None:
    manifests = render(None, values_file) if values_file else render()
    container = operator_container(manifests)
    args = cli.build_parser().parse_args(container["args"])
    cfg = OperatorConfig(
        sidecar_image=args.sidecar_image,
        default_engine_images=dict(args.default_engine_image),
        namespaces=tuple(args.namespace),
        resync_seconds=args.resync_seconds,
    )
    assert args.standalone and args.peering is None
    assert cfg.sidecar_image and cfg.sidecar_image.rsplit(":", 1)[1]
    port = container["ports"][0]["containerPort"]
    assert args.liveness == f"http://0.0.0.0:{port}/healthz"
    assert container["livenessProbe"]["httpGet"]["port"] == container["ports"][0]["name"]
    values = yaml.safe_load(values_file.read_text()) if values_file else {}
    watched = values.get("operator", {}).get("watchNamespaces", [])
    assert list(cfg.namespaces) == watched and args.all_namespaces == (not watched)
    roles = by_kind(manifests, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == sorted(watched)


def test_service_monitor_selects_operator_services(render: Renderer) -> None:
    (monitor,) = by_kind(render({"serviceMonitor": {"enabled": True}}), "ServiceMonitor")
    spec = parse_spec({"model": {"name": "m", "image": "engine:1"}})
    service = builders.build_service(builders.Owner("x", "ns", "uid"), spec)
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    port_names = {p["name"] for p in service["spec"]["ports"]}
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= port_names
    assert monitor["spec"]["namespaceSelector"] == {"any": True}


def test_operator_image_uid_matches_builders() -> None:
    assert builders.SIDECAR_USER == IMAGE_UID


@pytest.mark.parametrize("example", sorted(EXAMPLES_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_example_children_validate(
    example: Path, render: Renderer, capsys: pytest.CaptureFixture[str]
) -> None:
    chart_args = [
        a
        for a in operator_container(render())["args"]
        if a.startswith(("--sidecar-image=", "--default-engine-image="))
    ]
    assert cli.main(["render", str(example), "--namespace", "llm", *chart_args]) == 0, capsys.readouterr().err
    children = [d for d in yaml.safe_load_all(capsys.readouterr().out) if d]
    assert {"Deployment", "Service", "ConfigMap"} <= {c["kind"] for c in children}
    for child in children:
        try:
            kubernetes_validate.validate(child, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{example.name}: {child['kind']}: {'.'.join(map(str, exc.path))}: {exc.message}")
    for name, pod in pod_specs(children):
        assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC"), name
        for container in pod["containers"]:
            sc = container.get("securityContext", {})
            assert not sc.get("privileged") and "add" not in sc.get("capabilities", {}), name
            if container["name"] != "engine":  # the engine image is the user's; ours run as the image uid
                assert sc["runAsNonRoot"] and sc["runAsUser"] == IMAGE_UID and sc["readOnlyRootFilesystem"]
                assert sc["allowPrivilegeEscalation"] is False
