"""An obligation's deadline in the plan's kind of words (10个工作日内, 每日8:00前), for people.

Answers carry it beside the structured deadline so that a caller can show the time as the plan
gives it without knowing every kind.
"""

from __future__ import annotations

from liandong.document.model import Deadline, DeadlineKind, Repeat

# What each start event is called in a deadline's words; the incident itself needs no words.
START_WORDS = {
    "incident_reported": "",
    "request_received": "接到请求后",
    "order_issued": "接到命令后",
    "instruction_received": "接到批示后",
    "complaint_received": "接到投诉后",
}


def duration_words(seconds: int) -> str:
    """20分钟, 1小时, 90秒: the largest unit that divides the duration."""
    if seconds % 3600 == 0:
        return f"{seconds // 3600}小时"
    if seconds % 60 == 0:
        return f"{seconds // 60}分钟"
    return f"{seconds}秒"


def _clock(time_of_day: str) -> str:
    if time_of_day == "00:00":
        return "24:00"  # the first midnight after the start ends that day (每日……报 with no hour: by the day's end)
    hours, minutes = time_of_day.split(":")
    return f"{int(hours)}:{minutes}"


def deadline_wording(d: Deadline) -> str:
    """The deadline in words; empty when the plan gives no time and nothing recurs."""
    if d.kind is DeadlineKind.TIME_OF_DAY:
        first = f"{'每日' if d.repeat is Repeat.DAILY else ''}{_clock(d.time_of_day)}前"
    else:
        first = {
            DeadlineKind.NONE: "",
            DeadlineKind.AT_ONCE: "立即",
            DeadlineKind.PROMPTLY: "及时(无时限)",
            DeadlineKind.ELAPSED: f"{duration_words(d.seconds)}内",
            DeadlineKind.CALENDAR_DAYS: f"{d.days}日内",
            DeadlineKind.WORKING_DAYS: f"{d.days}个工作日内",
            DeadlineKind.SAME_DAY: "当天",
        }[d.kind]
    if d.latest_seconds is not None:
        first += f",最迟不得超过{duration_words(d.latest_seconds)}"
    if d.repeat is Repeat.INTERVAL:
        first += f"{',' if first else ''}此后每{duration_words(d.every_seconds)}续报,直至事件结束"
    elif d.repeat is Repeat.CONTINUING:
        first += f"{',' if first else ''}随后续报,直至事件结束"
    elif d.repeat is Repeat.DAILY:
        first = f"{first},直至事件结束" if d.kind is DeadlineKind.TIME_OF_DAY else f"每日{first},直至事件结束"
    if not first:
        return ""
    return START_WORDS.get(d.start, "") + first
