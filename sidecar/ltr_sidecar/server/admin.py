"""The admin plane: `ltr.v1.PredictorAdmin` on its own listener, apart from the data plane.

Every call must carry `authorization: Bearer <token>`, the token being the content of the configured
`admin_token_file` (a Secret the operator creates and mounts into its own pod and the sidecars; it is
re-read on every call, so a rotated Secret takes effect at once). Without a token file the admin plane is
not served at all. A NetworkPolicy (built by the operator) admits only the operator's pods to the port.

`LoadPredictor` loads versions from the configured predictor store only, by exact name: no paths over
the wire and no "latest" (which could name an unpromoted candidate); an empty version puts the pod back
on the predictor its config file names (a canary's rollback). The operator, the only caller that holds
the token, loads named candidates for its canary.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc

from ltr.v1 import scheduler_pb2 as pb
from ltr.v1 import scheduler_pb2_grpc as pb_grpc
from ltr_sidecar.errors import SidecarError
from ltr_sidecar.predictor.runtime.store import VERSION_RE
from ltr_sidecar.server.core import SchedulerCore
from ltr_sidecar.server.grpc_server import abort_with, bind, server_options, status_to_proto
from ltr_sidecar.server.validation import invalid

log = logging.getLogger(__name__)

PREDICTOR_ADMIN = pb.DESCRIPTOR.services_by_name["PredictorAdmin"].full_name
MAX_TOKEN_BYTES = 4096


def read_token(path: str | Path) -> bytes:
    """The admin token in `path` (surrounding whitespace stripped); ValueError for an empty or huge one."""
    data = Path(path).read_bytes()[: MAX_TOKEN_BYTES + 1].strip()
    if not data or len(data) > MAX_TOKEN_BYTES:
        raise ValueError(f"admin token file {path} must hold 1-{MAX_TOKEN_BYTES} bytes")
    return data


class TokenAuth(grpc.aio.ServerInterceptor):
    """Refuses (UNAUTHENTICATED) every call whose bearer token does not match the token file."""

    def __init__(self, token_file: str | Path) -> None:
        self.token_file = Path(token_file)

    def authorized(self, metadata: tuple[tuple[str, str | bytes], ...]) -> bool:
        given = next((v for k, v in metadata if k == "authorization"), "")
        given_bytes = given.encode() if isinstance(given, str) else given
        try:
            expected = b"Bearer " + read_token(self.token_file)
        except (OSError, ValueError) as exc:
            log.error("admin plane: cannot read the token file: %s", exc)
            return False
        return hmac.compare_digest(given_bytes, expected)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        if self.authorized(tuple(handler_call_details.invocation_metadata or ())):
            return await continuation(handler_call_details)

        async def deny(request: Any, context: grpc.aio.ServicerContext) -> None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "a valid admin bearer token is required")

        return grpc.unary_unary_rpc_method_handler(deny)


def check_version(version: str) -> None:
    """Only exact store version names may be loaded over the wire ("" = the config file's predictor)."""
    if version and (version == "latest" or not VERSION_RE.match(version)):
        raise invalid(
            "version must be an exact version name of the predictor store (letters, digits, '.', '_', "
            "'-'; not 'latest')"
        )


class PredictorAdminService(pb_grpc.PredictorAdminServicer):
    def __init__(self, core: SchedulerCore) -> None:
        self.core = core

    async def LoadPredictor(
        self, request: pb.LoadPredictorRequest, context: grpc.aio.ServicerContext
    ) -> pb.PredictorStatus:
        try:
            if request.path:
                raise invalid(
                    "loading a predictor by path is not accepted over the wire; publish it to the "
                    "predictor store and load its version"
                )
            check_version(request.version)
            status = await self.core.load_predictor(request.version or None)
        except SidecarError as exc:
            await abort_with(context, exc)
            raise
        return status_to_proto(status)

    async def GetPredictor(
        self, request: pb.GetPredictorRequest, context: grpc.aio.ServicerContext
    ) -> pb.PredictorStatus:
        return status_to_proto(self.core.predictor_status())


class AdminSurface:
    """The authenticated admin listener (PredictorAdmin only, no reflection)."""

    def __init__(
        self, core: SchedulerCore, token_file: str, host: str = "0.0.0.0", port: int = 50052
    ) -> None:
        read_token(token_file)  # fail at start, not at the first call
        self.server = grpc.aio.server(interceptors=[TokenAuth(token_file)], options=server_options(64 * 1024))
        pb_grpc.add_PredictorAdminServicer_to_server(PredictorAdminService(core), self.server)
        self.port = bind(self.server, host, port, "admin gRPC")

    async def start(self) -> None:
        await self.server.start()

    async def stop(self, grace_s: float = 1.0) -> None:
        await self.server.stop(grace_s)
