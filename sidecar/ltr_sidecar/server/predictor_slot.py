"""The predictor slot: which predictor serves, where it comes from, hot reload and the FCFS fallback.

Resolution order: an explicit path, else `predictor_store`/`predictor_version`, else `predictor_dir`,
else the bundled cold-start predictor. A failed load keeps the running predictor; when nothing loads
at all the slot is empty and the core serves FCFS (never an outage).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path

from ltr_sidecar.errors import ErrorCode, SidecarError
from ltr_sidecar.predictor.runtime.base import Predictor
from ltr_sidecar.predictor.runtime.registry import bundled_predictor_path, load_predictor
from ltr_sidecar.predictor.runtime.store import StoreError, VersionNotFound, open_store
from ltr_sidecar.server.config import SidecarConfig

log = logging.getLogger(__name__)


def resolve_predictor_path(
    config: SidecarConfig, version: str | None = None, path: str | None = None
) -> Path:
    """Where to load a predictor from: explicit path, else store/version, else config dir, else bundled."""
    if path:
        return Path(path)
    if version:
        if not config.predictor_store:
            raise SidecarError(
                ErrorCode.FAILED_PRECONDITION,
                f"cannot load version {version!r}: no predictor_store configured",
            )
        return store_path(config.predictor_store, version)
    if config.predictor_dir:
        return Path(config.predictor_dir)
    if config.predictor_store and config.predictor_version:
        return store_path(config.predictor_store, config.predictor_version)
    # No version named: the bundled generic predictor (cold start). Never "latest in the store": an
    # unpromoted candidate published by a retrain job must not reach pods on a restart.
    return bundled_predictor_path()


def store_path(store: str, version: str) -> Path:
    """Directory of `version` in the predictor store ("latest" names the newest)."""
    try:
        return Path(open_store(store).resolve(version))
    except VersionNotFound as exc:
        raise SidecarError(ErrorCode.NOT_FOUND, f"predictor version {version!r}: {exc}") from exc
    except StoreError as exc:
        raise SidecarError(ErrorCode.FAILED_PRECONDITION, f"predictor version {version!r}: {exc}") from exc
    except OSError as exc:
        raise SidecarError(ErrorCode.FAILED_PRECONDITION, f"predictor store {store}: {exc}") from exc


class PredictorSlot:
    """Holds the serving predictor; `on_change(predictor)` is called after every swap."""

    def __init__(self, config: SidecarConfig, on_change: Callable[[Predictor | None], None]) -> None:
        self.config = config
        self.predictor: Predictor | None = None
        self.loaded_at: float | None = None
        self.last_error = ""
        self._on_change = on_change
        self._lock = asyncio.Lock()

    @property
    def version(self) -> str:
        return str(self.predictor.version) if self.predictor is not None else ""

    @property
    def backbone(self) -> str:
        return str(self.predictor.backbone) if self.predictor is not None else ""

    def install(self, predictor: Predictor | None) -> None:
        """Swap in `predictor` (None: serve FCFS)."""
        self.predictor = predictor
        self.loaded_at = time.time() if predictor is not None else None
        self._on_change(predictor)

    async def load(self, version: str | None = None, path: str | None = None) -> None:
        """Load and atomically swap in a predictor; on failure keep the old one and raise SidecarError."""
        async with self._lock:
            try:
                target = resolve_predictor_path(self.config, version, path)
                predictor = await asyncio.to_thread(load_predictor, target)
            except SidecarError as exc:
                self.last_error = exc.message
                raise
            except Exception as exc:  # PredictorLoadError, OSError, torch errors...
                self.last_error = f"loading predictor failed: {exc}"
                code = (
                    ErrorCode.NOT_FOUND
                    if isinstance(exc, FileNotFoundError)
                    else ErrorCode.FAILED_PRECONDITION
                )
                raise SidecarError(code, self.last_error) from exc
            self.install(predictor)
            self.last_error = ""
            log.info("predictor %s (%s) loaded from %s", self.version, self.backbone, target)

    async def load_initial(self) -> None:
        """Configured source, else the bundled default; if nothing loads, serve FCFS (never an outage)."""
        attempts: list[str | None] = [None]
        if self.config.predictor_dir or self.config.predictor_store:
            attempts.append(str(bundled_predictor_path()))
        errors: list[str] = []
        for path in attempts:
            try:
                await self.load(None, path)
                if errors:
                    self.last_error = "; ".join(errors)
                return
            except SidecarError as exc:
                errors.append(exc.message)
            except ImportError as exc:
                errors.append(f"predictor package unavailable: {exc}")
        self.last_error = "; ".join(errors) + "; serving FCFS"
        log.warning("no predictor could be loaded (%s)", self.last_error)
        self.install(None)

    async def reload_from_config(self, config: SidecarConfig) -> bool:
        """Hot-reload when the predictor source keys changed; True when a new predictor was loaded."""
        if config.predictor_source() == self.config.predictor_source():
            return False
        self.config = config
        try:
            await self.load()
        except SidecarError as exc:
            log.error("predictor hot reload failed, keeping %r: %s", self.version, exc.message)
            return False
        return True
