"""The identity every child shares: its owner, names, labels, owner reference and metadata (pure)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ltr_operator import constants as c
from ltr_operator.security import OperatorPeer
from ltr_operator.spec import LTRServingSpec


@dataclass(frozen=True)
class Owner:
    """The LTRServing a child belongs to."""

    name: str
    namespace: str
    uid: str


@dataclass(frozen=True)
class Inputs:
    """Values resolved outside the spec (operator defaults, promotion state)."""

    engine_image: str
    sidecar_image: str
    predictor_version: str  # "" = bundled generic predictor (cold start)
    admin_token: str = ""  # the admin plane's bearer token ("" = admin plane off)
    operator: OperatorPeer = field(default_factory=OperatorPeer)


def names(owner_name: str) -> dict[str, str]:
    """Child object names."""
    return {
        "deployment": owner_name,
        "service": owner_name,
        "configmap": f"{owner_name}-sidecar",
        "pvc": f"{owner_name}-store",
        "retrain": f"{owner_name}-retrain",
        "retrain_result": f"{owner_name}-retrain-result",
        "admin": f"{owner_name}-admin",
        "netpol": owner_name,
    }


def selector(owner: Owner) -> dict[str, str]:
    return {c.LABEL_OWNER: owner.name, c.LABEL_COMPONENT: "engine"}


def labels(owner: Owner, component: str) -> dict[str, str]:
    return {
        c.LABEL_NAME: "ltr-serving",
        c.LABEL_INSTANCE: owner.name,
        c.LABEL_COMPONENT: component,
        c.LABEL_MANAGED_BY: c.MANAGED_BY,
        c.LABEL_OWNER: owner.name,
    }


def owner_reference(owner: Owner) -> dict[str, Any]:
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.KIND,
        "name": owner.name,
        "uid": owner.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def meta(owner: Owner, name: str, component: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": owner.namespace,
        "labels": labels(owner, component),
        "ownerReferences": [owner_reference(owner)],
    }


def store_volume(owner: Owner, spec: LTRServingSpec) -> dict[str, Any]:
    store = spec.predictor.store
    if store is None:
        return {"name": "store", "emptyDir": {}}  # traces only, lost with the pod
    claim = store.existing_claim or names(owner.name)["pvc"]
    return {"name": "store", "persistentVolumeClaim": {"claimName": claim}}
