"""`make cluster-demo`: the main job on one machine, on the real control plane.

Control plane up → `helm install` of the chart → `kubectl apply -f examples/cpu-only.yaml` (plus a
predictor store) → pods Ready with real sidecars → a few requests through a pod's sidecar → `kubectl
get ltrs` → a predictor version rolled out without restarting a pod → down.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import yaml

from tests.support.cluster import cluster as harness
from tests.support.cluster import ltrs
from tests.support.cluster.release import CHART, OPERATOR_NAMESPACE, RELEASE
from tests.support.cluster.tools import REPO_ROOT


def say(text: str) -> None:
    print(f"\n== {text}", flush=True)


def main() -> int:
    state = Path(tempfile.mkdtemp(prefix="ltr-cluster-demo-"))
    t0 = time.monotonic()
    say("control plane up (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, node agent)")
    c = harness.up(state)
    try:
        print(f"ready in {c.record['up_s']}s; KUBECONFIG={c.kubeconfig}")
        print(c.kubectl("get", "nodes", "-o", "wide").stdout)
        say(f"helm install {RELEASE} charts/ltr-serving -n {OPERATOR_NAMESPACE}")
        c.helm(
            "install",
            RELEASE,
            str(CHART),
            "-n",
            OPERATOR_NAMESPACE,
            "--create-namespace",
            "--wait",
            "--timeout",
            "180s",
            "--set",
            "operator.extraArgs={--resync-seconds=3}",
        )
        print(c.kubectl("-n", OPERATOR_NAMESPACE, "get", "deploy,pods").stdout)
        say("kubectl apply -f examples/cpu-only.yaml (with a 1Gi predictor store added)")
        example = yaml.safe_load((REPO_ROOT / "examples" / "cpu-only.yaml").read_text())
        example["spec"]["predictor"] = {"store": {"size": "1Gi"}}
        example["spec"]["sidecar"]["configPollSeconds"] = 1
        name, ns = example["metadata"]["name"], "default"
        print(c.apply(json.dumps(example), ns))
        ltrs.wait_ready(c, ns, name, timeout_s=180)
        print(c.kubectl("get", "ltrs,deploy,rs,pods,svc,pvc", "-o", "wide").stdout)
        say("requests through a pod's sidecar (OpenAI HTTP → rank queue → engine)")
        pod = ltrs.engine_pods(c, ns, name)[0]
        for prompt in ("Say hi.", "Write a long essay about queues.", "2+2?"):
            answer = ltrs.complete(pod, prompt, max_tokens=8, model=example["spec"]["model"]["name"])
            print(f"{prompt!r}: {answer['usage']['completion_tokens']} tokens")
        print(
            "scores (higher = shorter expected answer):",
            [round(s, 3) for s in ltrs.rank(pod, ["Say hi.", "Write a long essay about queues."])],
        )
        say("roll out predictor v1 (published into the store) - no pod restarts")
        before = ltrs.identity(c, ns, name)
        ltrs.publish(c, ns, f"{name}-store", "v1")
        c.kubectl(
            "patch",
            "ltrs",
            name,
            "--type=merge",
            "-p",
            json.dumps({"spec": {"predictor": {"version": "v1"}}}),
        )
        ltrs.wait_ready(c, ns, name, version="v1")
        same = ltrs.identity(c, ns, name) == before
        print(c.kubectl("get", "ltrs", "-o", "wide").stdout)
        print(f"same pods, same ReplicaSet, no restarts: {same}")
        print(f"\ndemo done in {time.monotonic() - t0:.0f}s")
        return 0 if same else 1
    finally:
        say("control plane down")
        harness.down(state)


if __name__ == "__main__":
    sys.exit(main())
