"""The admin plane: PredictorAdmin on its own authenticated listener, store versions only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from ltr.v1 import scheduler_pb2 as pb
from ltr.v1 import scheduler_pb2_grpc as pb_grpc
from ltr_sidecar.predictor import PromptLengthPredictor
from ltr_sidecar.predictor.runtime.store import PredictorStore
from ltr_sidecar.server.app import SidecarApp
from tests.support.sidecar import FakeEngine, TaggedPredictor, admin_metadata, make_config, write_token

TOKEN = "s3cret-token-for-tests"


@pytest.fixture
def store(tmp_path: Path) -> PredictorStore:
    store = PredictorStore(tmp_path / "store")
    for v in ("v1", "v2"):
        PromptLengthPredictor(version=v).save(tmp_path / f"art-{v}")
        store.publish(tmp_path / f"art-{v}", v)
    return store


@pytest.fixture
async def app(fake_engine: FakeEngine, tmp_path: Path, store: PredictorStore) -> AsyncIterator[SidecarApp]:
    token_file = write_token(tmp_path / "admin" / "token", TOKEN)
    config = make_config(
        fake_engine.url,
        admin_token_file=str(token_file),
        admin_port=0,
        admin_host="127.0.0.1",
        predictor_store=str(store.root),
    )
    sidecar = SidecarApp(config, predictor=TaggedPredictor())
    await sidecar.start()
    yield sidecar
    await sidecar.stop(grace_s=2.0)


@pytest.fixture
async def admin(app: SidecarApp) -> AsyncIterator[pb_grpc.PredictorAdminStub]:
    assert app.admin is not None and app.admin.port != app.grpc_port
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.admin.port}") as ch:
        yield pb_grpc.PredictorAdminStub(ch)


async def test_admin_needs_the_token(admin: pb_grpc.PredictorAdminStub) -> None:
    for metadata in ((), (("authorization", "Bearer wrong"),), (("authorization", TOKEN),)):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await admin.GetPredictor(pb.GetPredictorRequest(), metadata=metadata)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    status = await admin.GetPredictor(pb.GetPredictorRequest(), metadata=admin_metadata(TOKEN))
    assert status.version == "tagged-v1"


async def test_a_rotated_token_takes_effect_at_once(
    app: SidecarApp, admin: pb_grpc.PredictorAdminStub
) -> None:
    assert app.admin is not None
    Path(app.config.admin_token_file).write_text("rotated\n")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await admin.GetPredictor(pb.GetPredictorRequest(), metadata=admin_metadata(TOKEN))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    await admin.GetPredictor(pb.GetPredictorRequest(), metadata=admin_metadata("rotated"))


async def test_admin_is_not_on_the_data_plane(app: SidecarApp) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}") as ch:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await pb_grpc.PredictorAdminStub(ch).LoadPredictor(
                pb.LoadPredictorRequest(version="v1"), metadata=admin_metadata(TOKEN)
            )
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert app.core.predictor_version == "tagged-v1"


async def test_load_only_exact_store_versions(
    admin: pb_grpc.PredictorAdminStub, app: SidecarApp, tmp_path: Path
) -> None:
    md = admin_metadata(TOKEN)
    PromptLengthPredictor(version="planted").save(tmp_path / "planted")
    cases = [
        (pb.LoadPredictorRequest(path=str(tmp_path / "planted")), grpc.StatusCode.INVALID_ARGUMENT, "path"),
        (pb.LoadPredictorRequest(version="latest"), grpc.StatusCode.INVALID_ARGUMENT, "latest"),
        (pb.LoadPredictorRequest(version="../planted"), grpc.StatusCode.INVALID_ARGUMENT, "exact version"),
        (pb.LoadPredictorRequest(version="v9"), grpc.StatusCode.NOT_FOUND, "v9"),
    ]
    for bad, code, needle in cases:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await admin.LoadPredictor(bad, metadata=md)
        assert err.value.code() == code and needle in (err.value.details() or ""), err.value.details()
    assert app.core.predictor_version == "tagged-v1"
    status = await admin.LoadPredictor(pb.LoadPredictorRequest(version="v2"), metadata=md)
    assert status.version == "v2" and app.core.predictor_version == "v2"
    # An empty version puts the pod back on what its config names (a canary's rollback): here the
    # config names no version, so the bundled cold-start predictor.
    status = await admin.LoadPredictor(pb.LoadPredictorRequest(), metadata=md)
    assert status.version.startswith("bundled")


async def test_no_token_file_no_admin_plane(fake_engine: FakeEngine) -> None:
    sidecar = SidecarApp(make_config(fake_engine.url), predictor=TaggedPredictor())
    await sidecar.start()
    try:
        assert sidecar.admin is None
    finally:
        await sidecar.stop(grace_s=1.0)
