"""The incident pages over plain HTTP: open incidents filtered by level and type, one incident's timeline and obligations."""

from __future__ import annotations

import re

from liandong.engine.runtime import DurableRuntime
from liandong.v1 import incidents_pb2 as ipb
from support.incidents import ManualClock, facts, incident_service, requested, stub
from support.servers import LOOPBACK, channel, target
from support.web import base_url, call

CROWD = "mass_incident"


def _ids(html: str) -> list[str]:
    return re.findall(r'<tr class="incident" id="incident-([^"]+)"', html)


def test_open_incidents_filter_by_level_and_type(runtime: DurableRuntime) -> None:
    """/incidents lists open incidents only; a level filter keeps those at that level or above, a type filter those of that type."""
    with incident_service(runtime, ManualClock(), http=f"{LOOPBACK}:0") as svc, channel(target(svc)) as ch:
        st = stub(ch)
        st.Report(
            ipb.ReportRequest(
                incident_id="small", type=CROWD, facts=facts(participants=80, local_forces_can_control=False)
            )
        )
        st.Report(
            ipb.ReportRequest(
                incident_id="large", type=CROWD, facts=facts(participants=150, local_forces_can_control=False)
            )
        )
        st.Report(ipb.ReportRequest(incident_id="fire1", type="fire", facts=facts(deaths=3)))
        st.Report(ipb.ReportRequest(incident_id="done", type=CROWD, facts=facts(participants=80)))
        st.Close(ipb.CloseRequest(incident_id="done", by="x"))
        url = base_url(svc)
        assert sorted(_ids(call(url + "/incidents").text)) == ["fire1", "large", "small"]
        assert sorted(_ids(call(url + "/incidents?type=mass_incident").text)) == ["large", "small"]
        assert _ids(call(url + "/incidents?type=mass_incident&level=county").text) == ["large"]
        page = call(url + "/incidents?level=county&type=fire")
        assert page.status == 200 and _ids(page.text) == [] and "没有符合条件的未结事件" in page.text
        assert 'value="county" selected' in page.text  # the filter shows what was chosen
        bad = call(url + "/incidents?level=galaxy")
        assert bad.status == 400 and "INVALID_ARGUMENT" in bad.text and "galaxy" in bad.text


def test_timeline_shows_reports_level_changes_overrides_and_overdue_obligations(runtime: DurableRuntime) -> None:
    """One incident's page: both reports, each level change, the override with its commander, an acknowledgement, and the overdue duty marked."""
    clock = ManualClock()
    with incident_service(runtime, clock, http=f"{LOOPBACK}:0") as svc, channel(target(svc)) as ch:
        st = stub(ch)
        opened = st.Report(
            ipb.ReportRequest(
                incident_id="t1",
                type=CROWD,
                facts=facts(participants=80, local_forces_can_control=False),
                start_events=requested(),
            )
        )
        reply = next(o for o in opened.obligations if o.id == "reply_20min")
        st.Acknowledge(ipb.AcknowledgeRequest(incident_id="t1", obligation_id="reply_20min", unit=reply.who[0].id))
        clock.advance(minutes=30)
        assert svc.clocks is not None and svc.clocks.run_once() > 0  # the at-once duties fall overdue
        st.Report(ipb.ReportRequest(incident_id="t1", facts=facts(participants=150)))
        st.SetCommandLevel(
            ipb.SetCommandLevelRequest(incident_id="t1", level="city", by="总指挥 张三", reason="舆情升温")
        )
        page = call(base_url(svc) + "/incidents/t1")
        assert page.status == 200
        html = page.text
        assert re.search(r'id="command-level">市级', html)
        assert "指挥调整：总指挥 张三，舆情升温" in html
        timeline = html[html.index('id="timeline"') :]
        assert timeline.count('class="entry report"') == 2
        assert timeline.count('class="entry level_changed"') == 3  # township, county, then city by override
        assert "→ 县级指挥 (county)（规则判定）" in timeline and "（指挥调整）" in timeline
        assert timeline.count('class="entry acknowledge"') == 1 and 'class="entry obligation_overdue"' in timeline
        assert re.search(r'<tr class="obligation overdue" id="obligation-neighbours_muster">', html)
        assert re.search(r'id="obligation-reply_20min">.*?已完成', html, re.S)
        assert "已超时 25 分钟" in html  # due at once, 5 minutes' grace, 30 minutes on the clock
        live = call(base_url(svc) + "/incidents/t1?part=live")
        assert live.status == 200 and "<html" not in live.text and 'id="timeline"' in live.text
        missing = call(base_url(svc) + "/incidents/nobody")
        assert missing.status == 404 and "NOT_FOUND" in missing.text
