"""End to end: several versions of one rule set; occurred_at picks the one in force, `version` pins one."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from prometheus_client import CollectorRegistry

from liandong.client import Client, RuleSetNotFound
from liandong.engine.runtime import DurableRuntime
from liandong.server.app import Service
from liandong.v1 import liandong_pb2 as pb
from liandong.v1 import liandong_pb2_grpc as pb_grpc
from support.messages import request
from support.rules import canonical_hash, copy_demo, edit
from support.servers import make_config, target
from support.status import details

UTC = dt.UTC
BEIJING = dt.timezone(dt.timedelta(hours=8))


@pytest.fixture(scope="module")
def rules_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """demo 2024.1 (from 2024-01-01) and demo 2025.1 (from 2025-01-01, level III renamed), each with fixtures."""
    root = tmp_path_factory.mktemp("version-rules")
    demo = copy_demo(root)
    newer = demo / "2025.1.yaml"
    newer.write_text((demo / "2024.1.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    edit(newer, 'version: "2024.1"', 'version: "2025.1"')
    edit(newer, "effective_from: 2024-01-01", "effective_from: 2025-01-01")
    edit(newer, "title: 测试预案\n", "title: 测试预案(2025年修订)\n")
    edit(newer, "{code: III, name: 较大, rank: 2}", "{code: III, name: 较大(2025版), rank: 2}")
    fixtures = demo / "2025.1.fixtures.yaml"
    fixtures.write_text((demo / "2024.1.fixtures.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    edit(fixtures, 'version: "2024.1"', 'version: "2025.1"')
    return root


@pytest.fixture(scope="module")
def hashes(rules_dir: Path) -> dict[str, str]:
    return {v: canonical_hash(rules_dir / "demo" / f"{v}.yaml") for v in ("2024.1", "2025.1")}


def _at(moment: dt.datetime | None, version: str = "") -> pb.DetermineRequest:
    req = request("demo", {"deaths": 3}, version=version)
    if moment is not None:
        req.incident.occurred_at.FromDatetime(moment)
    return req


@pytest.mark.parametrize(
    ("moment", "version", "level_name"),
    [
        (dt.datetime(2024, 6, 1, 12, tzinfo=UTC), "2024.1", "较大"),
        (dt.datetime(2025, 6, 1, 12, tzinfo=UTC), "2025.1", "较大(2025版)"),
        (dt.datetime(2024, 1, 1, 0, 0, tzinfo=BEIJING), "2024.1", "较大"),
        # Days are Beijing days: 2024-12-31T16:00Z is already 2025-01-01 in Beijing.
        (dt.datetime(2024, 12, 31, 15, 59, 59, tzinfo=UTC), "2024.1", "较大"),
        (dt.datetime(2024, 12, 31, 16, 0, 0, tzinfo=UTC), "2025.1", "较大(2025版)"),
        (None, "2025.1", "较大(2025版)"),
    ],
    ids=[
        "mid 2024",
        "mid 2025",
        "first Beijing moment of 2024.1",
        "last UTC second before Beijing 2025",
        "Beijing midnight 2025",
        "no occurred_at means now",
    ],
)
def test_occurred_at_selects_the_version_in_force(
    stub: pb_grpc.ResponseServiceStub, hashes: dict[str, str], moment: dt.datetime | None, version: str, level_name: str
) -> None:
    """Without a pinned version, the answer comes from the version in force on the Beijing day of occurred_at, and names it and its hash."""
    det = stub.Determine(_at(moment), timeout=10)
    assert (det.version, det.content_hash, det.level.name) == (version, hashes[version], level_name)


def test_before_any_version_is_not_found(stub: pb_grpc.ResponseServiceStub) -> None:
    """An incident on a day before every version's effective_from is NOT_FOUND, naming the day."""
    with pytest.raises(grpc.RpcError) as caught:
        stub.Determine(_at(dt.datetime(2023, 12, 31, 15, 59, tzinfo=UTC)), timeout=10)
    got = details(caught.value)
    assert (
        got.code == grpc.StatusCode.NOT_FOUND and "in force on 2023-12-31" in got.message and got.resources == ["demo"]
    )


@pytest.mark.parametrize(
    ("moment", "pinned"),
    [
        (dt.datetime(2025, 6, 1, tzinfo=UTC), "2024.1"),
        (None, "2024.1"),
        (dt.datetime(2024, 6, 1, tzinfo=UTC), "2025.1"),
        (dt.datetime(2020, 1, 1, tzinfo=UTC), "2024.1"),
    ],
    ids=["older pinned in 2025", "older pinned now", "newer pinned in 2024", "pinned before it took effect"],
)
def test_version_pins_regardless_of_occurred_at(
    stub: pb_grpc.ResponseServiceStub, hashes: dict[str, str], moment: dt.datetime | None, pinned: str
) -> None:
    """A pinned version answers whatever the occurred_at."""
    det = stub.Determine(_at(moment, version=pinned), timeout=10)
    assert (det.version, det.content_hash) == (pinned, hashes[pinned])


def test_stream_selects_a_version_per_request(server: Service, hashes: dict[str, str]) -> None:
    """In one DetermineStream each request gets the version for its own occurred_at or pin."""
    reqs = [
        Client.request("demo", {"deaths": 3}, incident_id="a", occurred_at=dt.datetime(2024, 3, 1, tzinfo=UTC)),
        Client.request("demo", {"deaths": 3}, incident_id="b", occurred_at=dt.datetime(2025, 3, 1, tzinfo=UTC)),
        Client.request(
            "demo", {"deaths": 3}, incident_id="c", occurred_at=dt.datetime(2025, 3, 1, tzinfo=UTC), version="2024.1"
        ),
        Client.request("demo", {"deaths": 3}, incident_id="d"),
    ]
    with Client(target(server), timeout=10) as client:
        got = [(a.incident_id, a.version, a.content_hash) for a in client.determine_many(reqs, timeout=10)]
    assert got == [
        ("a", "2024.1", hashes["2024.1"]),
        ("b", "2025.1", hashes["2025.1"]),
        ("c", "2024.1", hashes["2024.1"]),
        ("d", "2025.1", hashes["2025.1"]),
    ]


def test_listing_shows_every_version_and_the_active_one(server: Service, hashes: dict[str, str]) -> None:
    """ListRuleSets lists both versions oldest first with their dates and hashes, and marks the one in force now as active."""
    with Client(target(server), timeout=10) as client:
        (demo,) = client.list_rulesets()
    assert demo.active_version == "2025.1"
    assert [(v.version, v.effective_from, v.effective_until, v.active, v.content_hash) for v in demo.versions] == [
        ("2024.1", "2024-01-01", "", False, hashes["2024.1"]),
        ("2025.1", "2025-01-01", "", True, hashes["2025.1"]),
    ]
    assert demo.versions[1].title == "测试预案(2025年修订)"


def test_get_ruleset_defaults_to_active_and_fetches_older(
    stub: pb_grpc.ResponseServiceStub, hashes: dict[str, str]
) -> None:
    """GetRuleSet without a version returns the active one; with a version, that one, listing every version either way."""
    active = stub.GetRuleSet(pb.GetRuleSetRequest(ruleset="demo"), timeout=10)
    assert (active.version.version, active.version.active, active.levels[1].name) == ("2025.1", True, "较大(2025版)")
    older = stub.GetRuleSet(pb.GetRuleSetRequest(ruleset="demo", version="2024.1"), timeout=10)
    assert (older.version.version, older.version.active, older.levels[1].name) == ("2024.1", False, "较大")
    assert older.version.content_hash == hashes["2024.1"]
    for rs in (active, older):
        assert [v.version for v in rs.versions] == ["2024.1", "2025.1"]


# -- the clock moving past an effective_from -----------------------------------------------------------------
class Clock:
    """A settable clock for the service's notion of "now"."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


@contextlib.contextmanager
def clocked(rules_dir: Path, runtime: DurableRuntime, clock: Clock) -> Iterator[Service]:
    """A service over rules_dir whose "now" is clock (set before the rules load)."""
    svc = Service(make_config(rules_dir, metrics_listen=""), registry=CollectorRegistry(), runtime=runtime)
    svc.state._clock = clock  # the rule books it loads take their "now" from here
    svc.start()
    try:
        yield svc
    finally:
        svc.stop(0)


def _active_info(svc: Service) -> list[dict[str, str]]:
    return [
        s.labels
        for family in svc.registry.collect()
        if family.name == "liandong_ruleset_active_info"
        for s in family.samples
        if s.value == 1
    ]


def test_active_version_follows_the_clock_without_reload(
    rules_dir: Path, runtime: DurableRuntime, hashes: dict[str, str]
) -> None:
    """When "now" passes a version's effective_from (Beijing midnight), listings, defaults and answers switch to it without a reload."""
    clock = Clock(dt.datetime(2024, 12, 31, 15, 59, tzinfo=UTC))
    with clocked(rules_dir, runtime, clock) as svc, Client(target(svc), timeout=10) as client:
        assert client.list_rulesets()[0].active_version == "2024.1"
        assert client.determine("demo", {"deaths": 3}).version == "2024.1"
        assert client.get_ruleset("demo").version.version == "2024.1"
        clock.now = dt.datetime(2024, 12, 31, 16, 0, tzinfo=UTC)
        (demo,) = client.list_rulesets()
        assert demo.active_version == "2025.1" and [v.active for v in demo.versions] == [False, True]
        det = client.determine("demo", {"deaths": 3})
        assert (det.version, det.content_hash) == ("2025.1", hashes["2025.1"])
        assert client.get_ruleset("demo").version.version == "2025.1"


def test_no_version_in_force_yet(rules_dir: Path, runtime: DurableRuntime) -> None:
    """Before every effective_from: no active version is listed or published, GetRuleSet falls back to the latest, and an undated incident is NOT_FOUND."""
    with (
        clocked(rules_dir, runtime, Clock(dt.datetime(2023, 6, 1, tzinfo=UTC))) as svc,
        Client(target(svc), timeout=10) as client,
    ):
        (demo,) = client.list_rulesets()
        assert demo.active_version == "" and not any(v.active for v in demo.versions)
        latest = client.get_ruleset("demo")
        assert (latest.version.version, latest.version.active) == ("2025.1", False)
        with pytest.raises(RuleSetNotFound) as caught:
            client.determine("demo", {"deaths": 3})
        assert "in force on 2023-06-01" in caught.value.message
        assert client.determine("demo", {"deaths": 3}, version="2024.1").version == "2024.1"
        assert _active_info(svc) == []


def test_active_version_metric_follows_the_clock(
    rules_dir: Path, runtime: DurableRuntime, hashes: dict[str, str]
) -> None:
    """The active-version info metric names the version in force now, also after "now" passed a newer version's effective_from."""
    clock = Clock(dt.datetime(2024, 12, 31, 12, tzinfo=UTC))
    with clocked(rules_dir, runtime, clock) as svc, Client(target(svc), timeout=10) as client:
        assert _active_info(svc) == [{"ruleset": "demo", "version": "2024.1", "content_hash": hashes["2024.1"][:16]}]
        clock.now = dt.datetime(2025, 1, 2, tzinfo=UTC)
        assert client.list_rulesets()[0].active_version == "2025.1"  # the service itself has moved on
        assert _active_info(svc) == [{"ruleset": "demo", "version": "2025.1", "content_hash": hashes["2025.1"][:16]}]
