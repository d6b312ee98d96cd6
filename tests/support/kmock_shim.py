"""A kmock 0.8 KubernetesEmulator that behaves enough like kube-apiserver for kopf and the operator.

kmock alone never bumps resourceVersion, ignores ``?resourceVersion=`` in watches (replaying old
objects), answers 500 for a failed JSON-patch ``test`` and has no garbage collector. This subclass
keeps kmock's storage and HTTP layer and replaces the write path:

- create: uid, creationTimestamp, generation=1, resourceVersion; ``generateName``; 409 on duplicates;
- every write (create, patch, delete mark, final delete) bumps one global resourceVersion;
- PATCH: merge patch or JSON patch; a failed ``test`` op or bad path → 422; a stale
  ``metadata.resourceVersion`` precondition → 409; with a ``status`` subresource declared, the main
  resource ignores status changes and ``/status`` changes only status; generation bumps when the
  spec (anything but metadata/status) changes;
- DELETE honours finalizers (sets deletionTimestamp); removing the last finalizer deletes;
- a deleted owner cascades to objects whose ownerReferences name its uid, and an object created
  with only dead owners is removed (background garbage collection);
- list answers the current resourceVersion; watch from ``?resourceVersion=N`` sends only newer
  changes, and subscribes before the snapshot so no event is lost in between.
"""

from __future__ import annotations

import copy
import datetime
import itertools
import uuid
from collections.abc import AsyncIterator
from typing import Any

import jsonpatch
from kmock import KubernetesEmulator, KubernetesError, KubernetesObjectNotFoundError
from kmock._internal import apps, dicts, enums, rendering

_NOT_SPEC = ("metadata", "status", "apiVersion", "kind")


def _rv(obj: dict[str, Any]) -> int:
    try:
        return int(obj.get("metadata", {}).get("resourceVersion", 0))
    except (TypeError, ValueError):
        return 0


def _apply_patch(last: Any, new: Any) -> Any:
    """A merge patch from the last applied configuration to `new` (keys it dropped become null)."""
    if not isinstance(new, dict):
        return new
    patch = {k: _apply_patch(last.get(k) if isinstance(last, dict) else None, v) for k, v in new.items()}
    if isinstance(last, dict):
        patch.update({k: None for k in last if k not in new})
    return patch


def _spec_part(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in _NOT_SPEC}


class KubeAPI(KubernetesEmulator):
    """kmock's emulator with resourceVersions, 409/422 answers, status subresource and GC."""

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self._counter = itertools.count(1)
        self._last_rv = 0
        self._applied: dict[tuple[Any, str | None, str], Any] = {}  # last server-side-applied config

    def _next_rv(self) -> str:
        self._last_rv = next(self._counter)
        return str(self._last_rv)

    def _has_status_subresource(self, resource: Any) -> bool:
        try:
            return "status" in self.resources[resource].subresources
        except (KeyError, LookupError):
            return False

    def _live_uids(self) -> set[str]:
        return {obj.get("metadata", {}).get("uid") for obj in self._objects.values() if not obj.deleted}

    async def _emit(self, resource: Any, kind: str, raw: dict[str, Any]) -> None:
        await self._buses[resource].put({"type": kind, "object": raw})

    async def _store(self, key: tuple[Any, str | None, str], new: dict[str, Any], event: str) -> None:
        new.setdefault("metadata", {})["resourceVersion"] = self._next_rv()
        if key in self._objects:
            self._objects[key].create(new)  # appends a version (works for live and soft-deleted objects)
        else:
            self._objects[key] = new
        await self._emit(key[0], event, copy.deepcopy(new))

    async def _remove(self, key: tuple[Any, str | None, str]) -> None:
        raw = copy.deepcopy(self._objects[key].raw)
        raw["metadata"]["resourceVersion"] = self._next_rv()
        self._objects[key].delete()
        await self._emit(key[0], "DELETED", raw)
        uid = raw["metadata"].get("uid")
        for child_key, child in list(self._objects.items()):  # background cascading deletion
            if child.deleted or child_key == key:
                continue
            refs = child.get("metadata", {}).get("ownerReferences", [])
            if uid and any(ref.get("uid") == uid for ref in refs):
                await self._delete(child_key)

    async def _delete(self, key: tuple[Any, str | None, str]) -> None:
        if key not in self._objects or self._objects[key].deleted:
            raise KubernetesObjectNotFoundError()
        current = copy.deepcopy(self._objects[key].raw)
        meta = current.setdefault("metadata", {})
        if meta.get("finalizers"):
            if not meta.get("deletionTimestamp"):
                meta["deletionTimestamp"] = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                await self._store(key, current, "MODIFIED")
        else:
            await self._remove(key)

    async def _create(self, request: rendering.Request) -> None:
        obj = copy.deepcopy(request.data) if isinstance(request.data, dict) else None
        if obj is None:
            raise KubernetesError(status=400, reason="BadRequest", message="body must be a JSON object")
        meta = obj.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        if not meta.get("name"):
            raise KubernetesError(status=422, reason="Invalid", message="metadata.name: Required value")
        if request.namespace:
            meta["namespace"] = request.namespace
        key = (request.resource, meta.get("namespace"), meta["name"])
        if key in self._objects and not self._objects[key].deleted:
            raise KubernetesError(status=409, reason="AlreadyExists", message=f"{meta['name']} exists")
        meta.update(
            uid=str(uuid.uuid4()),
            generation=1,
            creationTimestamp=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        )
        meta.pop("resourceVersion", None)
        await self._store(key, obj, "ADDED")
        refs = [ref.get("uid") for ref in meta.get("ownerReferences", []) if ref.get("uid")]
        if refs and not any(uid in self._live_uids() for uid in refs):
            await self._remove(key)  # the garbage collector removes children of a deleted owner
        # The response body is read by kmock's _serve_create from the stored object.
        request.data.clear()
        request.data.update(copy.deepcopy(obj))

    async def _patch(self, request: rendering.Request) -> None:
        key = (request.resource, request.namespace, request.name)
        is_apply = "apply-patch" in str(request.headers.get("Content-Type", ""))
        if is_apply and (key not in self._objects or self._objects[key].deleted):
            self._applied[key] = copy.deepcopy(request.data)  # server-side apply creates what is missing
            await self._create(request)
            return
        if key not in self._objects or self._objects[key].deleted:
            raise KubernetesObjectNotFoundError()
        current = copy.deepcopy(self._objects[key].raw)
        patch = request.data
        if is_apply:  # SSA, one manager: fields it applied before and applies no more are removed
            patch = _apply_patch(self._applied.get(key, {}), request.data)
            self._applied[key] = copy.deepcopy(request.data)
        try:
            if isinstance(patch, list):
                patched = jsonpatch.apply_patch(copy.deepcopy(current), patch)
            elif isinstance(patch, dict):
                wanted = str(patch.get("metadata", {}).get("resourceVersion") or "")
                if wanted and wanted != current["metadata"].get("resourceVersion"):
                    raise KubernetesError(
                        status=409,
                        reason="Conflict",
                        message="the object has been modified; please apply your changes "
                        "to the latest version and try again",
                    )
                patched = dict(dicts.merge_patch_dict(current, patch))
            else:
                raise KubernetesError(status=400, reason="BadRequest", message="unsupported patch body")
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, ValueError) as exc:
            raise KubernetesError(status=422, reason="Invalid", message=f"patch failed: {exc}") from None
        new = copy.deepcopy(patched)
        if self._has_status_subresource(request.resource):
            new = copy.deepcopy(current)
            if request.subresource == "status":
                new["status"] = patched.get("status", {})
            else:
                new.update({k: v for k, v in patched.items() if k != "status"})
        new["metadata"]["uid"] = current["metadata"]["uid"]  # immutable identity fields
        new["metadata"]["creationTimestamp"] = current["metadata"].get("creationTimestamp")
        gen = current["metadata"].get("generation", 1)
        new["metadata"]["generation"] = gen + 1 if _spec_part(new) != _spec_part(current) else gen
        if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers"):
            self._objects[key].create(new)
            await self._remove(key)
        else:
            await self._store(key, new, "MODIFIED")

    async def _handle(self, request: rendering.Request) -> Any:
        if request.resource is not None and request.action in (
            enums.action.CREATE,
            enums.action.UPDATE,
            enums.action.DELETE,
        ):
            async with self._lock:
                if request.action == enums.action.CREATE:
                    await self._create(request)
                elif request.action == enums.action.UPDATE and request.name is not None:
                    await self._patch(request)
                elif request.action == enums.action.DELETE and request.name is not None:
                    await self._delete((request.resource, request.namespace, request.name))
        # Skip KubernetesEmulator._handle (its naive write path); keep its reading fallbacks.
        return await apps.RawHandler._handle(self, request)

    async def _serve_list(self, request: rendering.Request) -> rendering.Payload:
        payload = await super()._serve_list(request)
        payload["metadata"]["resourceVersion"] = str(self._last_rv)
        return payload

    async def _serve_watch(self, request: rendering.Request) -> AsyncIterator[rendering.Payload]:
        yield b""
        try:
            since = int(request.params.get("resourceVersion", ""))
        except ValueError:
            since = 0  # absent or "0": start with the current state, like the API server
        bus = self._buses[request.resource]
        async with self._lock:  # writes hold the lock too: the snapshot and the mark are consistent
            mark = await bus.mark()
            snapshot = [
                copy.deepcopy(obj.raw)
                for (res, ns, _), obj in self._objects.items()
                if res == request.resource
                and not obj.deleted
                and (request.namespace is None or ns == request.namespace)
            ]
        try:
            for raw in snapshot:
                if _rv(raw) > since:
                    yield {"type": "ADDED" if not since else "MODIFIED", "object": raw}
            async for event in bus.stream(since=mark):
                raw = event.get("object", {})
                if _rv(raw) <= since:
                    continue
                if request.namespace is None or raw.get("metadata", {}).get("namespace") == request.namespace:
                    yield event
        finally:
            await bus.unmark(mark)
