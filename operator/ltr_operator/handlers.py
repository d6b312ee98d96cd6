"""kopf wiring only: which events trigger a reconcile, settings, login, liveness probe.

`build_registry(cfg)` returns a fresh kopf.OperatorRegistry (no global state), so the CLI and the
tests run the same handlers. Every trigger funnels into Reconciler.run(namespace, name), which
serialises passes per object and coalesces bursts (a trigger during a pass causes one more pass).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from typing import Any

import aiohttp
import kopf

from ltr_operator import constants as c
from ltr_operator.config import OperatorConfig
from ltr_operator.kube import (
    USER_AGENT,
    ApiError,
    Connection,
    KubeClient,
    connection,
    event_for,
    load_configuration,
)
from ltr_operator.reconcile import NamespaceTerminating, namespace_terminating, now_text, reconcile

# Children the operator watches for drift (deleted → recreated) and status (Deployment, Pods).
WATCHED_CHILDREN: tuple[tuple[str, str, str], ...] = (
    ("apps", "v1", "deployments"),
    ("", "v1", "services"),
    ("", "v1", "configmaps"),
    ("networking.k8s.io", "v1", "networkpolicies"),
    ("", "v1", "persistentvolumeclaims"),
    ("batch", "v1", "cronjobs"),
    ("", "v1", "serviceaccounts"),
    ("rbac.authorization.k8s.io", "v1", "roles"),
    ("rbac.authorization.k8s.io", "v1", "rolebindings"),
    ("", "v1", "pods"),
)
RETRY_DELAY_S = 10.0
RESYNC_CONCURRENCY = 8  # objects reconciled at once by one resync round
PASS_TIMEOUT_S = 60.0  # a pass normally takes well under a second; one stuck await must not wedge its object
log = logging.getLogger("ltr_operator")


class Reconciler:
    """Per-object serialisation + coalescing of reconcile passes."""

    def __init__(
        self, client: KubeClient, cfg: OperatorConfig, pass_timeout_s: float = PASS_TIMEOUT_S
    ) -> None:
        self.client, self.cfg, self.pass_timeout_s = client, cfg, pass_timeout_s
        self._busy: set[tuple[str, str]] = set()
        self._dirty: set[tuple[str, str]] = set()
        self.passes = 0

    async def emit(self, body: dict[str, Any], etype: str, reason: str, message: str) -> None:
        """Post an Event; best effort (a lost Event must not fail the reconcile). None into a namespace
        being deleted (that create is a 403)."""
        try:
            if await namespace_terminating(self.client, body["metadata"]["namespace"]):
                return
            await self.client.create(event_for(body, etype, reason, message, now_text()))
        except (ApiError, OSError, aiohttp.ClientError) as exc:
            log.warning("could not post event %s %s: %s", etype, reason, exc)

    async def run(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        if key in self._busy:
            self._dirty.add(key)
            return
        self._busy.add(key)
        try:
            while True:
                self._dirty.discard(key)
                body = await self.client.get(c.KIND, namespace, name)
                if body is None or body.get("metadata", {}).get("deletionTimestamp"):
                    return  # gone: owner references let the garbage collector remove the children
                deadline = asyncio.timeout(self.pass_timeout_s)
                try:
                    async with deadline:
                        await reconcile(self.client, self.cfg, body, self.emit)
                except NamespaceTerminating:
                    log.info("namespace %s is being deleted: not reconciling %s", namespace, name)
                    return
                except TimeoutError:
                    if not deadline.expired():  # one API call's own timeout: the callers report it
                        raise
                    log.exception(  # the traceback names the await that hung
                        "reconcile pass of %s/%s exceeded %gs: abandoned",
                        namespace,
                        name,
                        self.pass_timeout_s,
                    )
                    return
                self.passes += 1
                if key not in self._dirty:
                    return
        finally:
            self._busy.discard(key)


async def resync_all(
    reconciler: Reconciler, keys: Iterable[tuple[str, str]], limit: int = RESYNC_CONCURRENCY
) -> None:
    """One resync round: every (namespace, name) reconciled, at most `limit` at a time, so one slow or
    stuck object delays no other; failures are logged and the next round tries again."""
    gate = asyncio.Semaphore(limit)

    async def one(namespace: str, name: str) -> None:
        async with gate:
            try:
                await reconciler.run(namespace, name)
            except (ApiError, OSError, aiohttp.ClientError) as exc:
                log.warning("resync of %s/%s failed: %s", namespace, name, exc)
            except Exception:  # a bug must not stop the round for every other object
                log.exception("resync of %s/%s crashed", namespace, name)

    await asyncio.gather(*(one(namespace, name) for namespace, name in sorted(keys)))


def to_connection_info(conn: Connection) -> kopf.ConnectionInfo:
    return kopf.ConnectionInfo(
        server=conn.server,
        token=conn.token,
        insecure=conn.insecure or None,
        ca_path=conn.ca_path,
        certificate_path=conn.cert_path,
        private_key_path=conn.key_path,
    )


def build_registry(cfg: OperatorConfig) -> kopf.OperatorRegistry:
    """All handlers of the operator, bound to `cfg`."""
    registry = kopf.OperatorRegistry()
    state: dict[str, Any] = {}
    resource = (c.GROUP, c.VERSION, c.PLURAL)

    @kopf.on.login(registry=registry)
    async def login(**_: Any) -> kopf.ConnectionInfo:
        """Loaded afresh on every (re-)login: a rotated service-account token, a new exec-plugin token."""
        return to_connection_info(await connection(await load_configuration(cfg.kubeconfig)))

    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=c.GROUP)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix=c.GROUP, key="last-handled-configuration"
        )
        settings.persistence.finalizer = f"{c.GROUP}/kopf-finalizer"
        # kopf would post an Event for every handler success on every child and pod (noise, and 403s in a
        # namespace being deleted); the operator posts its own Events for what users need to see.
        settings.posting.level = logging.WARNING
        settings.watching.server_timeout = 300
        settings.networking.request_timeout = 30
        client = KubeClient(await load_configuration(cfg.kubeconfig), user_agent=USER_AGENT)
        await client.__aenter__()
        state["client"], state["reconciler"], state["known"] = client, Reconciler(client, cfg), set()
        state["resync"] = asyncio.create_task(resync_loop(), name="ltr-resync")

    @kopf.on.cleanup(registry=registry)
    async def cleanup(**_: Any) -> None:
        if "resync" in state:
            state["resync"].cancel()
            await asyncio.gather(state["resync"], return_exceptions=True)
        if "client" in state:
            await state["client"].close()

    async def resync_loop() -> None:
        """Every resync period: reconcile every known LTRServing (drift repair, pod predictor status)."""
        while True:
            await asyncio.sleep(cfg.resync_seconds)
            await resync_all(state["reconciler"], list(state["known"]))

    @kopf.on.probe(id="reconcile_passes", registry=registry)
    def passes(**_: Any) -> int:
        return state["reconciler"].passes if "reconciler" in state else 0

    async def run(namespace: str, name: str) -> None:
        try:
            await state["reconciler"].run(namespace, name)
        except ApiError as exc:  # transient API trouble: retry later, never crash
            raise kopf.TemporaryError(f"API call failed: {exc}", delay=RETRY_DELAY_S) from exc

    @kopf.on.resume(*resource, registry=registry)
    @kopf.on.create(*resource, registry=registry)
    @kopf.on.update(*resource, field="spec", registry=registry)
    async def changed(*, name: str, namespace: str | None, **_: Any) -> None:
        assert namespace is not None, "LTRServing is namespaced"
        await run(namespace, name)

    @kopf.on.event(*resource, registry=registry)
    def track(*, event: kopf.RawEvent, name: str, namespace: str | None, **_: Any) -> None:
        """Remember live objects for the resync loop (a per-object kopf timer would need a finalizer)."""
        if event.get("type") == "DELETED":
            state["known"].discard((namespace, name))
        else:
            state["known"].add((namespace, name))

    for group, version, plural in WATCHED_CHILDREN:

        @kopf.on.event(
            group,
            version,
            plural,
            labels={c.LABEL_MANAGED_BY: c.MANAGED_BY, c.LABEL_OWNER: kopf.PRESENT},
            registry=registry,
        )
        async def child_changed(
            *, labels: Mapping[str, str], namespace: str | None, logger: kopf.Logger, **_: Any
        ) -> None:
            try:
                await state["reconciler"].run(namespace, labels[c.LABEL_OWNER])
            except ApiError as exc:  # event handlers are not retried: the resync timer catches up
                logger.warning("reconcile after a child event failed: %s", exc)

    return registry
