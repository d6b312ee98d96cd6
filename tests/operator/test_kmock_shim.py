"""The kmock shim behaves like kube-apiserver where kopf and the operator rely on it."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import kopf

from tests.support.operator import Http, eventually

CM = "/api/v1/namespaces/default/configmaps"
LTRS = "/apis/ltrserving.dev/v1alpha1/namespaces/default/ltrservings"
EXAMPLES = "/apis/kopf.dev/v1/namespaces/default/kopfexamples"


def rv_str(obj: dict) -> str:
    return obj["metadata"]["resourceVersion"]


def rv(obj: dict) -> int:
    return int(obj["metadata"]["resourceVersion"])


async def test_resource_version_increases_on_every_write(http: Http) -> None:
    created = await http.create(CM, {"metadata": {"name": "a"}, "data": {"k": "1"}})
    assert created["metadata"]["uid"] and created["metadata"]["creationTimestamp"]
    assert created["metadata"]["generation"] == 1
    seen = [rv(created)]
    for i in range(3):
        seen.append(rv(await http.patch(f"{CM}/a", {"data": {"k": str(i)}})))
    seen.append(
        rv(
            await http.patch(
                f"{CM}/a", [{"op": "add", "path": "/data/x", "value": "y"}], "application/json-patch+json"
            )
        )
    )
    assert seen == sorted(seen) and len(set(seen)) == len(seen)
    listed = await http.get(CM)
    assert int(listed["metadata"]["resourceVersion"]) == seen[-1]
    status, _ = await http.request("POST", CM, {"metadata": {"name": "a"}})
    assert status == 409


async def test_generation_bumps_on_spec_changes_only(http: Http) -> None:
    await http.create(LTRS, {"metadata": {"name": "g"}, "spec": {"replicas": 1}})
    meta_only = await http.patch(f"{LTRS}/g", {"metadata": {"annotations": {"a": "b"}}})
    assert meta_only["metadata"]["generation"] == 1
    spec = await http.patch(f"{LTRS}/g", {"spec": {"replicas": 2}})
    assert spec["metadata"]["generation"] == 2


async def test_watch_resumed_from_resource_version_does_not_replay(http: Http, kube_url: str) -> None:
    await http.create(CM, {"metadata": {"name": "old"}})
    since = (await http.get(CM))["metadata"]["resourceVersion"]
    events: list[dict] = []

    async def watch() -> None:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{kube_url}{CM}", params={"watch": "true", "resourceVersion": since}) as resp,
        ):
            async for line in resp.content:
                if line.strip():
                    events.append(json.loads(line))

    task = asyncio.create_task(watch())
    await asyncio.sleep(0.2)
    await http.create(CM, {"metadata": {"name": "new"}})
    await eventually(lambda: events)
    await asyncio.sleep(0.2)
    task.cancel()
    names = [e["object"]["metadata"]["name"] for e in events]
    assert names == ["new"], names
    assert all(int(e["object"]["metadata"]["resourceVersion"]) > int(since) for e in events)


async def test_failed_json_patch_test_answers_422(http: Http) -> None:
    created = await http.create(CM, {"metadata": {"name": "t"}})
    ops = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": "999999"},
        {"op": "add", "path": "/data", "value": {"x": "1"}},
    ]
    status, body = await http.request("PATCH", f"{CM}/t", ops, "application/json-patch+json")
    assert status == 422 and body["reason"] == "Invalid"
    ok = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": rv_str(created)},
        {"op": "add", "path": "/data", "value": {"x": "1"}},
    ]
    assert (await http.patch(f"{CM}/t", ok, "application/json-patch+json"))["data"] == {"x": "1"}


async def test_stale_resource_version_in_merge_patch_conflicts(http: Http) -> None:
    stale = rv_str(await http.create(CM, {"metadata": {"name": "c"}}))
    await http.patch(f"{CM}/c", {"data": {"a": "1"}})
    status, _ = await http.request("PATCH", f"{CM}/c", {"metadata": {"resourceVersion": stale}, "data": {}})
    assert status == 409


async def test_finalizers_block_deletion_until_removed(http: Http) -> None:
    await http.create(CM, {"metadata": {"name": "f", "finalizers": ["x/y"]}})
    status, _ = await http.request("DELETE", f"{CM}/f")
    assert status == 200
    marked = await http.get(f"{CM}/f")
    assert marked["metadata"]["deletionTimestamp"]
    await http.patch(f"{CM}/f", {"metadata": {"finalizers": None}})
    assert await http.get(f"{CM}/f") is None


async def test_status_subresource_separates_spec_and_status(http: Http) -> None:
    await http.create(LTRS, {"metadata": {"name": "s"}, "spec": {"replicas": 1}})
    after_main = await http.patch(f"{LTRS}/s", {"spec": {"replicas": 3}, "status": {"replicas": 9}})
    assert after_main["spec"]["replicas"] == 3 and "replicas" not in after_main.get("status", {})
    after_status = await http.patch(f"{LTRS}/s/status", {"spec": {"replicas": 5}, "status": {"replicas": 2}})
    assert after_status["spec"]["replicas"] == 3 and after_status["status"]["replicas"] == 2
    assert after_status["metadata"]["generation"] == 2


async def test_owner_deletion_cascades_to_children(http: Http) -> None:
    owner = await http.create(LTRS, {"metadata": {"name": "o"}, "spec": {}})
    ref = {
        "apiVersion": "ltrserving.dev/v1alpha1",
        "kind": "LTRServing",
        "name": "o",
        "uid": owner["metadata"]["uid"],
        "controller": True,
    }
    await http.create(CM, {"metadata": {"name": "child", "ownerReferences": [ref]}})
    await http.create(CM, {"metadata": {"name": "stranger"}})
    await http.request("DELETE", f"{LTRS}/o")
    assert await http.get(f"{CM}/child") is None
    assert await http.get(f"{CM}/stranger") is not None


async def test_tiny_kopf_handler_round_trip(http: Http, kube_url: str, kopf_thread: type) -> None:
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def login(**_: object) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=kube_url, token="t")

    @kopf.on.create("kopf.dev", "v1", "kopfexamples", registry=registry)
    async def created(spec: dict, patch: kopf.Patch, **_: object) -> None:
        patch.status["echo"] = spec["value"] * 2

    @kopf.on.delete("kopf.dev", "v1", "kopfexamples", registry=registry)
    async def deleted(**_: object) -> None:
        pass  # makes kopf add (and later remove) its finalizer

    async with kopf_thread(registry):
        await http.create(EXAMPLES, {"metadata": {"name": "e"}, "spec": {"value": 21}})
        obj = await eventually(lambda: _get_with(http, f"{EXAMPLES}/e", "status", "echo"))
        assert obj["status"]["echo"] == 42
        assert obj["metadata"].get("finalizers")
        await http.request("DELETE", f"{EXAMPLES}/e")
        await eventually(lambda: _gone(http, f"{EXAMPLES}/e"))


async def _get_with(http: Http, path: str, *keys: str) -> dict | None:
    obj = await http.get(path)
    cur = obj
    for key in keys:
        cur = (cur or {}).get(key)
    return obj if cur is not None else None


async def _gone(http: Http, path: str) -> bool:
    return await http.get(path) is None
