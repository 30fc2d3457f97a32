"""Refused admin calls are all counted but their log lines rate-limited; plaintext listening accepts every loopback spelling."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
import structlog.testing
from prometheus_client import CollectorRegistry

from liandong.engine.runtime import DurableRuntime
from liandong.server import admin as admin_service
from liandong.server import config
from liandong.v1 import admin_pb2 as apb
from liandong.v1 import admin_pb2_grpc as apb_grpc
from liandong.v1 import liandong_pb2_grpc as pb_grpc
from support.messages import request
from support.metrics import sample
from support.rules import copy_demo
from support.servers import ADMIN_TOKEN, channel, running, target


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_sampler_writes_at_most_its_limit_per_window_and_reports_what_it_held() -> None:
    """25 lines in one window: 10 written, 15 held; the first line of the next window says 15 were held."""
    clock = Clock()
    sampler = admin_service.LogSampler(limit=10, window=60.0, clock=clock)
    taken = [sampler.take() for _ in range(25)]
    assert taken == [0] * 10 + [None] * 15
    clock.now += 59.9
    assert sampler.take() is None
    clock.now += 0.1
    assert sampler.take() == 16
    assert sampler.take() == 0


def test_refused_admin_calls_are_all_counted_and_few_are_logged(tmp_path: Path, runtime: DurableRuntime) -> None:
    """40 wrong tokens and 5 missing ones are counted one by one by reason, while at most the limit of admin_denied lines is written, none with a token."""
    copy_demo(tmp_path)
    registry = CollectorRegistry()
    wrong = "wrong-token-" + "z" * 20
    with (
        running(tmp_path, runtime, registry, metrics_listen="", admin_token=ADMIN_TOKEN) as svc,
        channel(target(svc)) as ch,
        structlog.testing.capture_logs() as logs,
    ):
        admin = apb_grpc.RulesAdminServiceStub(ch)  # type: ignore[no-untyped-call]
        codes = []
        for n in range(45):
            metadata = () if n % 9 == 0 else (("authorization", f"Bearer {wrong}{n}"),)
            with pytest.raises(grpc.RpcError) as caught:
                admin.GetReloadStatus(apb.GetReloadStatusRequest(), metadata=metadata, timeout=10)
            codes.append(caught.value.code())
        assert admin.GetReloadStatus(
            apb.GetReloadStatusRequest(), metadata=(("authorization", f"Bearer {ADMIN_TOKEN}"),), timeout=10
        ).ok
    assert codes.count(grpc.StatusCode.UNAUTHENTICATED) == 5 and codes.count(grpc.StatusCode.PERMISSION_DENIED) == 40
    assert sample(registry, "liandong_admin_denied_total", reason="wrong") == 40
    assert sample(registry, "liandong_admin_denied_total", reason="missing") == 5
    denied = [e for e in logs if e["event"] == "admin_denied"]
    assert len(denied) == admin_service.DENIED_LINES_PER_WINDOW
    assert ADMIN_TOKEN not in str(logs) and wrong not in str(logs)


@pytest.mark.parametrize("address", ["127.1:0", "[::ffff:127.0.0.1]:0", "2130706433:0", "LOCALHOST:0"])
def test_every_loopback_spelling_is_allowed_plaintext(address: str) -> None:
    """Plaintext on a loopback address spelt the short, mapped or numeric way needs no --allow-plaintext."""
    assert config.is_loopback(config.load({"listen": address}, env={}).listen)


@pytest.mark.parametrize("address", ["0.0.0.0:0", "[::]:0", "[::ffff:10.0.0.1]:0", "127.0.0.1 evil:0", "dead.beef:0"])
def test_addresses_that_are_not_loopback_still_need_the_flag(address: str) -> None:
    """Plaintext on an address that is not loopback, or not an address at all, is still refused without --allow-plaintext."""
    with pytest.raises(config.ConfigError, match="allow-plaintext"):
        config.load({"listen": address}, env={})


@pytest.mark.parametrize("address", ["127.1:0", "2130706433:0", "[::ffff:127.0.0.1]:0"])
def test_a_loopback_spelling_serves(tmp_path: Path, runtime: DurableRuntime, address: str) -> None:
    """A service told to listen on a short, numeric or IPv4-mapped loopback address binds it and answers on 127.0.0.1."""
    copy_demo(tmp_path)
    with running(tmp_path, runtime, metrics_listen="", listen=address) as svc, channel(target(svc)) as ch:
        assert pb_grpc.ResponseServiceStub(ch).Determine(request("demo", {"deaths": 3}), timeout=10).level.code == "III"  # type: ignore[no-untyped-call]
