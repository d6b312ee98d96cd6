"""Operator-wide settings (from `ltr operator` flags): defaults that specs may leave out."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field

from ltr_operator.security import OperatorPeer
from ltr_operator.spec import ENGINES


@dataclass(frozen=True)
class OperatorConfig:
    """What the cluster admin sets once; every LTRServing can override images in its spec."""

    sidecar_image: str | None = None
    default_engine_images: Mapping[str, str] = field(default_factory=dict)  # engine -> image
    namespaces: tuple[str, ...] = ()  # empty = all namespaces
    resync_seconds: float = 30.0  # timer: drift repair, pod predictor polling, status refresh
    pod_probe_timeout_s: float = 1.0  # GetPredictor per pod
    kubeconfig: str | None = None  # None: in-cluster service account, else $KUBECONFIG/~/.kube/config
    # The admin plane's bearer token: copied into each LTRServing's Secret, sent on every admin call.
    admin_token: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False)
    operator: OperatorPeer = field(default_factory=OperatorPeer)  # admitted to the admin port

    def __post_init__(self) -> None:
        unknown = set(self.default_engine_images) - set(ENGINES)
        if unknown:
            raise ValueError(
                f"default engine images for unknown engines {sorted(unknown)}; "
                f"engines are {', '.join(ENGINES)}"
            )
        if (
            not self.admin_token
            or len(self.admin_token) > 4096
            or any(ch.isspace() for ch in self.admin_token)
        ):
            raise ValueError("the admin token must be 1-4096 characters without white space")
        if self.resync_seconds <= 0 or self.pod_probe_timeout_s <= 0:
            raise ValueError("resync_seconds and pod_probe_timeout_s must be > 0")
