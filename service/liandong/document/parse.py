"""From located YAML values to the document model, collecting every structural problem.

Parsing checks shape (keys, value types, id syntax); references between parts of the document are
checked afterwards in `check`.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import replace
from typing import TypeVar

from liandong.document import words
from liandong.document.model import (
    INCIDENT_REPORTED,
    START_EVENTS,
    Accepted,
    AllOf,
    AnyOf,
    Boundary,
    Check,
    Commander,
    Comparison,
    Condition,
    Deadline,
    DeadlineKind,
    EnumValue,
    Group,
    InputRef,
    InputSpec,
    InputType,
    Level,
    Not,
    Obligation,
    Operand,
    Pos,
    Repeat,
    Rule,
    RuleSetDocument,
    Scalar,
    Source,
    Then,
    Timing,
    Unit,
)
from liandong.document.shapes import ShapeReader, describe
from liandong.document.source import LMap, LScalar, Value
from liandong.document.wording import deadline_wording
from liandong.suggest import closest

RULESET_ID = re.compile(r"^[a-z][a-z0-9-]*$")
CATALOGUE_ID = re.compile(r"^[a-z][a-z0-9_]*$")
RULE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
DURATION = re.compile(r"^(\d+)\s*(s|m|h|d|wd)$")
TIME_OF_DAY = re.compile(r"^([01]?[0-9]|2[0-3]):([0-5][0-9])$")
PARTICIPATING = "participating"  # obligation `who` meaning every participating unit
MEMBERS = "members"  # obligation `who` meaning every participating unit that is a member unit
AT_ONCE = "at_once"  # obligation `within` for 立即 / 第一时间 / 零时间
PROMPTLY = "promptly"  # obligation `within` for 及时 / 迅速: no number
SAME_DAY = "same_day"  # obligation `within` for 当天
EVERY_DAY = "day"  # obligation `every` for 每日 (with `by`, or with no time)
CONTINUING = "continuing"  # obligation `every` for 续报 with no interval (随后报送, 连续完整报告)
RESERVED_INPUTS = frozenset({"sid", "id"})  # durable-rules keys every fact by these
_SECONDS = {"s": 1, "m": 60, "h": 3600}


T = TypeVar("T")

TOP_KEYS = (
    "ruleset",
    "version",
    "title",
    "source",
    "effective_from",
    "effective_until",
    "incident_types",
    "boundary",
    "inputs",
    "levels",
    "units",
    "groups",
    "obligations",
    "rules",
    "checks",
    "empty_report",
    "accept",
)
EMPTY_REPORT = ("refused", "meaningful")  # `empty_report:` values; refused is the default
TOP_REQUIRED = (
    "ruleset",
    "version",
    "title",
    "source",
    "effective_from",
    "incident_types",
    "boundary",
    "inputs",
    "rules",
)
INPUT_KEYS = (
    "type",
    "unit",
    "min",
    "max",
    "default",
    "required",
    "optional",
    "meaning",
    "values",
    "max_length",
    "step",
)
ACCEPT_KEYS = ("finding", "reason")
# The keys of each part of the document (rules/schema/liandong-rule-document.schema.json follows them).
SOURCE_KEYS = ("plan", "location")
LEVEL_KEYS = ("code", "name", "rank", "then", "citation")
UNIT_KEYS = ("id", "name", "duties", "citation", "member")
GROUP_KEYS = ("id", "name", "lead", "members", "duties", "citation")
OBLIGATION_KEYS = ("id", "text", "who", "within", "starts", "by", "latest", "every", "citation")
RULE_KEYS = ("id", "title", "citation", "when", "then")
CHECK_KEYS = ("id", "require", "message", "citation")
COMMANDER_KEYS = ("role", "who")
THEN_KEYS = ("level", "command_tier", "commanders", "lead", "units", "groups", "obligations")


def _names(cond: Condition) -> tuple[str, ...]:
    """Every input a condition names, operands included, each once in the order written."""
    if isinstance(cond, (AllOf, AnyOf)):
        found = [n for c in cond.items for n in _names(c)]
    elif isinstance(cond, Not):
        found = list(_names(cond.item))
    else:
        found = [cond.input] + ([cond.operand.input] if isinstance(cond.operand, InputRef) else [])
    return tuple(dict.fromkeys(found))


class Parser(ShapeReader):
    """Reads one document's grammar; every problem found is kept in `problems`."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.boundary = Boundary.CIVIL_CODE
        self.inputs_empty: Value | None = None

    # -- the document ----------------------------------------------------------------------------
    def document(self, root: Value) -> RuleSetDocument | None:
        top = self.mapping(root, "document", TOP_KEYS, TOP_REQUIRED)
        if top is None:
            return None
        e = top.entries
        self.ruleset = self.ident(e.get("ruleset"), "ruleset", RULESET_ID) or ""
        version = self.text(e.get("version"), "version")
        title = self.text(e.get("title"), "title")
        source = self._source(e.get("source"))
        self.default_document = source.plan if source else ""
        effective_from = self.date(e.get("effective_from"), "effective_from")
        effective_until = self.date(e.get("effective_until"), "effective_until") if "effective_until" in e else None
        if effective_from and effective_until and effective_until < effective_from:
            self.problem(e["effective_until"], "effective_until is before effective_from", key="effective_until")
        type_refs = self.id_list(e.get("incident_types"), "incident_types")  # read once: its problems once
        types = tuple(t for t, _ in type_refs)
        for t, at in type_refs:
            if not CATALOGUE_ID.match(t):
                self.problem(
                    at, f"incident type '{t}' is not a valid id (expected {CATALOGUE_ID.pattern})", key="incident_types"
                )
        if "incident_types" in e and not types:
            self.problem(e["incident_types"], "incident_types must name at least one type", key="incident_types")
        boundary_text = self.text(e.get("boundary"), "boundary")
        if boundary_text is not None:
            try:
                self.boundary = Boundary(boundary_text)
            except ValueError:
                allowed = [b.value for b in Boundary]
                self.problem(
                    e["boundary"],
                    f"boundary '{boundary_text}' is not one of {', '.join(allowed)}",
                    key="boundary",
                    suggestion=closest(boundary_text, allowed),
                )
        inputs = self._inputs(e.get("inputs"))
        levels = self.each(e.get("levels"), "levels", self._level)
        units = self.each(e.get("units"), "units", self._unit)
        groups = self.each(e.get("groups"), "groups", self._group)
        obligations = self.each(e.get("obligations"), "obligations", self._obligation)
        rules = self.each(e.get("rules"), "rules", self._rule)
        checks = self.each(e.get("checks"), "checks", self._check)
        accepted = self.each(e.get("accept"), "accept", self._accept)
        empty_report = self.text(e.get("empty_report"), "empty_report") if "empty_report" in e else EMPTY_REPORT[0]
        if empty_report is not None and empty_report not in EMPTY_REPORT:
            self.problem(
                e["empty_report"],
                f"empty_report '{empty_report}' is not one of {', '.join(EMPTY_REPORT)}",
                key="empty_report",
                suggestion=closest(empty_report, EMPTY_REPORT),
            )
        if self.inputs_empty is not None and empty_report != "meaningful":
            self.problem(
                self.inputs_empty,
                "inputs is empty: declare the incident's fields, or write `empty_report: meaningful` for a plan"
                " that answers on the incident type alone",
                key="inputs",
            )
        if "rules" in e and not self.listing(e.get("rules"), "rules"):
            self.problem(e["rules"], "rules is empty: a rule set must have at least one rule", key="rules")
        if (version is None or title is None or source is None or effective_from is None) and not self.problems:
            return None
        # A header problem is already reported; the rest is still checked, so that every problem
        # comes out in one pass (the document is refused all the same).
        return RuleSetDocument(
            ruleset=self.ruleset,
            version=version or "",
            title=title or "",
            source=source or Source("", ""),
            effective_from=effective_from or dt.date.min,
            effective_until=effective_until,
            incident_types=types,
            boundary=self.boundary,
            inputs=inputs,
            levels=levels,
            units=units,
            groups=groups,
            obligations=obligations,
            rules=rules,
            path=self.path,
            checks=checks,
            empty_report_meaningful=empty_report == "meaningful",
            accepted=accepted,
        )

    def _source(self, value: Value | None) -> Source | None:
        m = self.mapping(value, "source", SOURCE_KEYS, SOURCE_KEYS)
        if m is None:
            return None
        plan = self.text(m.entries.get("plan"), "source.plan")
        location = self.text(m.entries.get("location"), "source.location")
        return Source(plan, location) if plan and location else None

    def _accept(self, value: Value, where: str) -> Accepted | None:
        m = self.mapping(value, where, ACCEPT_KEYS, ACCEPT_KEYS)
        if m is None:
            return None
        finding = self.text(m.entries.get("finding"), f"{where}.finding")
        reason = self.text(m.entries.get("reason"), f"{where}.reason")
        if finding is None or reason is None:
            return None
        return Accepted(finding, reason, self.pos(m, f"accept.{finding}"))

    def _inputs(self, value: Value | None) -> tuple[InputSpec, ...]:
        m = self.mapping(value, "inputs", None)  # every key is an input name
        if m is None:
            return ()
        self.inputs_empty = m if not m.entries else None  # allowed only where a report without facts means something
        out = []
        for name, spec in m.entries.items():
            if name in RESERVED_INPUTS:
                self.problem(
                    m.keys[name], f"input name '{name}' is reserved by the engine; choose another", key=f"inputs.{name}"
                )
                continue
            if not CATALOGUE_ID.match(name):
                self.problem(
                    m.keys[name],
                    f"input name '{name}' is not a valid id (expected {CATALOGUE_ID.pattern})",
                    key=f"inputs.{name}",
                )
                continue
            got = self._input(name, spec)
            if got is not None:
                out.append(got)
        return tuple(out)

    def _input(self, name: str, value: Value) -> InputSpec | None:
        where = f"inputs.{name}"
        m = self.mapping(value, where, INPUT_KEYS, ("type", "meaning"))
        if m is None:
            return None
        e = m.entries
        type_text = self.text(e.get("type"), f"{where}.type")
        meaning = self.text(e.get("meaning"), f"{where}.meaning")
        if type_text is None or meaning is None:
            return None
        try:
            kind = InputType(type_text)
        except ValueError:
            allowed = [t.value for t in InputType]
            self.problem(
                e["type"],
                f"{where}.type '{type_text}' is not one of {', '.join(allowed)}",
                key=f"{where}.type",
                suggestion=closest(type_text, allowed),
            )
            return None
        required = bool(
            self.scalar(e.get("required"), f"{where}.required", lambda v: isinstance(v, bool), "true or false")
        )
        optional = bool(
            self.scalar(e.get("optional"), f"{where}.optional", lambda v: isinstance(v, bool), "true or false")
        )
        has_default = "default" in e
        if required + optional + has_default != 1:
            self.problem(
                m, f"{where} must say exactly one of 'default: V', 'required: true' or 'optional: true'", key=where
            )
        default = None
        if has_default:
            raw = e["default"]
            if not isinstance(raw, LScalar) or raw.value is None:
                self.problem(raw, f"{where}.default must be a value, not {describe(raw)}", key=f"{where}.default")
            else:
                default = raw.value
        values: tuple[EnumValue, ...] = ()
        if kind is InputType.ENUM:
            vm = self.mapping(e.get("values"), f"{where}.values", None)  # every key is a value id
            if vm is None:
                if "values" not in e:
                    self.problem(m, f"{where} is an enum and needs 'values' (id: label)", key=f"{where}.values")
            else:
                collected = []
                for vid, label in vm.entries.items():
                    if not CATALOGUE_ID.match(vid):
                        self.problem(
                            vm.keys[vid],
                            f"enum value id '{vid}' is not a valid id (expected {CATALOGUE_ID.pattern})",
                            key=f"{where}.values.{vid}",
                        )
                    text = self.text(label, f"{where}.values.{vid}")
                    if text is not None:
                        collected.append(EnumValue(vid, text))
                if not collected:
                    self.problem(vm, f"{where}.values is empty", key=f"{where}.values")
                values = tuple(collected)
        elif "values" in e:
            self.problem(m.keys["values"], f"{where}.values is only for enum inputs", key=f"{where}.values")
        for bound in ("min", "max"):
            if bound in e and kind not in (InputType.INTEGER, InputType.NUMBER):
                self.problem(
                    m.keys[bound], f"{where}.{bound} is only for integer and number inputs", key=f"{where}.{bound}"
                )
        minimum = self.number(e.get("min"), f"{where}.min")
        maximum = self.number(e.get("max"), f"{where}.max")
        if minimum is not None and maximum is not None and minimum > maximum:
            self.problem(e["max"], f"{where}.max is below its min", key=f"{where}.max")
        max_length = 1000
        if "max_length" in e:
            if kind is not InputType.STRING:
                self.problem(
                    m.keys["max_length"], f"{where}.max_length is only for string inputs", key=f"{where}.max_length"
                )
            got = self.scalar(
                e["max_length"],
                f"{where}.max_length",
                lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0,
                "a positive whole number",
            )
            max_length = got if isinstance(got, int) else max_length
        unit = self.text(e.get("unit"), f"{where}.unit") or ""
        step = None
        if "step" in e:
            if kind is not InputType.NUMBER:
                self.problem(m.keys["step"], f"{where}.step is only for number inputs", key=f"{where}.step")
            step = self.number(e.get("step"), f"{where}.step")
            if step is not None and not step > 0:
                self.problem(e["step"], f"{where}.step must be above 0", key=f"{where}.step")
                step = None
        return InputSpec(
            name=name,
            type=kind,
            meaning=meaning,
            pos=self.pos(m, where),
            unit=unit,
            minimum=minimum,
            maximum=maximum,
            required=required,
            optional=optional,
            default=default if isinstance(default, (int, float, bool, str)) else None,
            values=values,
            max_length=max_length,
            step=float(step) if step is not None else None,
        )

    def _level(self, value: Value, where: str) -> Level | None:
        m = self.mapping(value, where, LEVEL_KEYS, ("code", "name", "rank"))
        if m is None:
            return None
        code = self.text(m.entries.get("code"), f"{where}.code")
        name = self.text(m.entries.get("name"), f"{where}.name")
        rank = self.scalar(
            m.entries.get("rank"),
            f"{where}.rank",
            lambda v: isinstance(v, int) and not isinstance(v, bool),
            "a whole number",
        )
        here = f"level '{code}'" if code else where
        then = None
        if "then" in m.entries:
            then = self._then(m.entries["then"], here, "")
            if then is not None and then.level is not None:
                self.problem(m.entries["then"], f"{here} then cannot set a level", key="then.level")
            if "citation" not in m.entries:
                self.problem(m, f"{here} has 'then' and so needs a 'citation'", key="citation")
        citations = self.citations(m.entries.get("citation"), f"{here} citation") if "citation" in m.entries else ()
        if code is None or name is None or not isinstance(rank, int) or citations is None:
            return None
        return Level(code, name, rank, self.pos(m, where), then, citations)

    def _unit(self, value: Value, where: str) -> Unit | None:
        m = self.mapping(value, where, UNIT_KEYS, ("id", "name", "duties", "citation"))
        if m is None:
            return None
        uid = self.ident(m.entries.get("id"), f"{where}.id", CATALOGUE_ID)
        name = self.text(m.entries.get("name"), f"{where}.name")
        duties = self.text(m.entries.get("duties"), f"{where}.duties")
        citations = self.citations(m.entries.get("citation"), f"{where}.citation")
        member = self.scalar(m.entries.get("member"), f"{where}.member", lambda v: isinstance(v, bool), "true or false")
        if uid is None or name is None or duties is None or citations is None:
            return None
        return Unit(uid, name, duties, citations, self.pos(m, f"units.{uid}"), member=member is not False)

    def _group(self, value: Value, where: str) -> Group | None:
        m = self.mapping(
            value,
            where,
            GROUP_KEYS,
            ("id", "name", "members", "duties", "citation"),
        )
        if m is None:
            return None
        gid = self.ident(m.entries.get("id"), f"{where}.id", CATALOGUE_ID)
        name = self.text(m.entries.get("name"), f"{where}.name")
        lead = self.text(m.entries.get("lead"), f"{where}.lead") if "lead" in m.entries else None
        member_refs = self.id_list(m.entries.get("members"), f"{where}.members")
        members = tuple(i for i, _ in member_refs)
        refs = self.refs("members", member_refs)
        if lead is not None:
            refs[f"lead:{lead}"] = self.pos(m.entries["lead"], "lead")
        duties = self.text(m.entries.get("duties"), f"{where}.duties")
        citations = self.citations(m.entries.get("citation"), f"{where}.citation")
        if gid is None or name is None or duties is None or citations is None:
            return None
        return Group(gid, name, lead, members, duties, citations, self.pos(m, f"groups.{gid}"), refs)

    def _obligation(self, value: Value, where: str) -> Obligation | None:
        m = self.mapping(value, where, OBLIGATION_KEYS, ("id", "text", "citation"))
        if m is None:
            return None
        oid = self.ident(m.entries.get("id"), f"{where}.id", CATALOGUE_ID)
        text = self.text(m.entries.get("text"), f"{where}.text")
        who_value = m.entries.get("who")
        by_participants = isinstance(who_value, LScalar) and who_value.value == PARTICIPATING
        by_members = isinstance(who_value, LScalar) and who_value.value == MEMBERS
        if isinstance(who_value, LScalar) and isinstance(who_value.value, str) and not (by_participants or by_members):
            self.problem(
                who_value,
                f"{where}.who must be a list of unit ids, '{PARTICIPATING}' or '{MEMBERS}', not '{who_value.value}'",
                key=f"{where}.who",
                suggestion=closest(who_value.value, (PARTICIPATING, MEMBERS)),
            )
            who_value = None
        who_refs = () if by_participants or by_members else self.id_list(who_value, f"{where}.who")
        who = tuple(i for i, _ in who_refs)
        citations = self.citations(m.entries.get("citation"), f"{where}.citation")
        seconds, within_text, timing, deadline = self._deadline(m, where)
        if oid is None or text is None or citations is None:
            return None
        return Obligation(
            oid,
            text,
            who,
            seconds,
            within_text,
            citations,
            self.pos(m, f"obligations.{oid}"),
            self.refs("who", who_refs),
            by_participants=by_participants,
            by_members=by_members,
            timing=timing,
            deadline=deadline,
        )

    def _elapsed(self, at: Value, where: str) -> int | None:
        """A duration of minutes or hours (`20m`, `1h`), more than zero; None after a problem."""
        raw = self.text(at, where)
        if raw is None:
            return None
        match = DURATION.match(raw.strip())
        if match is None or match.group(2) not in _SECONDS or int(match.group(1)) == 0:
            self.problem(at, f"{where} '{raw}' is not a duration like 20m or 24h (more than zero)", key=where)
            return None
        return int(match.group(1)) * _SECONDS[match.group(2)]

    def _deadline(self, m: LMap, where: str) -> tuple[int | None, str, Timing, Deadline]:
        """An obligation's timing keys (`within`, `starts`, `by`, `latest`, `every`), each checked and
        located, as the legacy (within_seconds, within_text, timing) and the structured Deadline."""
        e = m.entries
        seconds: int | None = None
        within_text = ""
        timing = Timing.NONE
        kind = DeadlineKind.NONE
        days = 0
        start = INCIDENT_REPORTED
        if "starts" in e:
            written = self.text(e["starts"], f"{where}.starts")
            if written is not None and written not in START_EVENTS:
                self.problem(
                    e["starts"],
                    f"{where}.starts '{written}' is not one of {', '.join(START_EVENTS)}",
                    key=f"{where}.starts",
                    suggestion=closest(written, START_EVENTS),
                )
            elif written is not None:
                start = written
        if "within" in e:
            at = e["within"]
            raw = self.text(at, f"{where}.within")
            word = raw.strip() if raw is not None else None
            match = DURATION.match(word) if word else None
            if word == AT_ONCE:
                seconds, timing, kind = 0, Timing.AT_ONCE, DeadlineKind.AT_ONCE
            elif word == PROMPTLY:
                timing, kind = Timing.PROMPTLY, DeadlineKind.PROMPTLY
            elif word == SAME_DAY:
                timing, kind, within_text = Timing.CALENDAR, DeadlineKind.SAME_DAY, SAME_DAY
            elif raw is not None and match is None:
                self.problem(
                    at,
                    f"{where}.within '{raw}' is not a duration like 20m, 2h, 5d or 10wd, "
                    f"nor '{AT_ONCE}', '{PROMPTLY}' or '{SAME_DAY}'",
                    key=f"{where}.within",
                    suggestion=closest(raw, (AT_ONCE, PROMPTLY, SAME_DAY)),
                )
            elif match is not None and int(match.group(1)) == 0:
                # 0m used to mean "at once"; a zero limit reads as a deadline already missed.
                self.problem(
                    at,
                    f"{where}.within '{raw}' is a zero time limit; write `within: {AT_ONCE}` for 立即/第一时间/零时间",
                    key=f"{where}.within",
                    suggestion=AT_ONCE,
                )
            elif match is not None:
                number, unit = int(match.group(1)), match.group(2)
                within_text = f"{number}{unit}"
                if unit in _SECONDS:
                    seconds, timing, kind = number * _SECONDS[unit], Timing.WITHIN, DeadlineKind.ELAPSED
                else:
                    days, timing = number, Timing.CALENDAR
                    kind = DeadlineKind.WORKING_DAYS if unit == "wd" else DeadlineKind.CALENDAR_DAYS
        time_of_day = ""
        if "by" in e:
            at = e["by"]
            raw_by = at.value if isinstance(at, LScalar) else None
            found = TIME_OF_DAY.match(raw_by.strip()) if isinstance(raw_by, str) else None
            if found is None:
                # YAML 1.1 reads an unquoted 8:00 as the number 480: ask for quotes.
                self.problem(
                    at,
                    f'{where}.by must be a time of day in quotes, like "08:00" (Beijing time), not {describe(at)}',
                    key=f"{where}.by",
                )
            elif kind is not DeadlineKind.NONE:
                self.problem(
                    at,
                    f"{where}.by and {where}.within both give the first due time; keep one",
                    key=f"{where}.by",
                )
            else:
                time_of_day = f"{int(found.group(1)):02d}:{found.group(2)}"
                timing, kind, within_text = Timing.CALENDAR, DeadlineKind.TIME_OF_DAY, time_of_day
        latest: int | None = None
        if "latest" in e:
            latest = self._elapsed(e["latest"], f"{where}.latest")
            if latest is not None and kind is not DeadlineKind.SAME_DAY:
                self.problem(
                    e["latest"],
                    f"{where}.latest caps a same-day aim (当天……最迟不得超过24小时); it needs `within: {SAME_DAY}`",
                    key=f"{where}.latest",
                    suggestion=SAME_DAY,
                )
                latest = None
        repeat, every_seconds = Repeat.ONCE, 0
        if "every" in e:
            at = e["every"]
            raw_every = self.text(at, f"{where}.every")
            if raw_every == EVERY_DAY:
                # 每日8:00点前 (`by`) falls due each day; 每日汇总后报 (no time, or promptly) recurs daily but
                # never falls due: the plan names no hour, and 24:00 would be a deadline it does not give.
                if kind in (DeadlineKind.TIME_OF_DAY, DeadlineKind.NONE, DeadlineKind.PROMPTLY):
                    repeat = Repeat.DAILY
                else:
                    self.problem(
                        at,
                        f"{where}.every: {EVERY_DAY} takes `by`, the time of day each report is due (每日8:00点前), "
                        f"or no time at all (每日汇总后报), not `within`",
                        key=f"{where}.every",
                    )
            elif raw_every == CONTINUING:
                repeat = Repeat.CONTINUING
            elif raw_every is not None:
                match = DURATION.match(raw_every.strip())
                if match is None or match.group(2) not in _SECONDS or int(match.group(1)) == 0:
                    self.problem(
                        at,
                        f"{where}.every '{raw_every}' is not an interval like 2h, nor '{EVERY_DAY}' or '{CONTINUING}'",
                        key=f"{where}.every",
                        suggestion=closest(raw_every, (EVERY_DAY, CONTINUING)),
                    )
                elif kind is DeadlineKind.TIME_OF_DAY:
                    self.problem(
                        at,
                        f"{where}.every with `by` is `every: {EVERY_DAY}`",
                        key=f"{where}.every",
                        suggestion=EVERY_DAY,
                    )
                else:
                    repeat, every_seconds = Repeat.INTERVAL, int(match.group(1)) * _SECONDS[match.group(2)]
        # 「前」 on a time of day reads as 以前, the time counterpart of 以下: the document's boundary decides
        # whether the instant itself is in time. Every other limit includes its end (以内, 届满 and
        # 不得超过 include the number; a period's last day runs to 24:00, 民法典 第二百零三条).
        end_included = not (kind is DeadlineKind.TIME_OF_DAY and self.boundary is Boundary.ACCIDENT_GRADING)
        deadline = Deadline(
            kind=kind,
            start=start,
            seconds=seconds or 0,
            days=days,
            time_of_day=time_of_day,
            latest_seconds=latest,
            repeat=repeat,
            every_seconds=every_seconds,
            end_included=end_included,
        )
        return seconds, within_text, timing, replace(deadline, wording=deadline_wording(deadline))

    def _rule(self, value: Value, where: str) -> Rule | None:
        if isinstance(value, LMap) and isinstance(value.entries.get("id"), LScalar):
            written = value.entries["id"]
            if isinstance(written, LScalar) and isinstance(written.value, str):
                where = f"rule '{written.value}'"
        m = self.mapping(value, where, RULE_KEYS, RULE_KEYS)
        if m is None:
            return None
        rid = self.ident(m.entries.get("id"), f"{where}.id", RULE_ID) or ""
        here = f"rule '{rid}'" if rid else where
        title = self.text(m.entries.get("title"), f"{here} title", rid)
        citations = self.citations(m.entries.get("citation"), f"{here} citation", rid)
        when = self.condition(m.entries["when"], here, rid) if "when" in m.entries else None
        then = self._then(m.entries.get("then"), here, rid)
        if not rid or title is None or citations is None or when is None or then is None:
            return None
        return Rule(rid, title, citations, when, then, self.pos(m, f"rules.{rid}"))

    def _check(self, value: Value, where: str) -> Check | None:
        if isinstance(value, LMap):
            written = value.entries.get("id")
            if isinstance(written, LScalar) and isinstance(written.value, str):
                where = f"check '{written.value}'"
        m = self.mapping(value, where, CHECK_KEYS, ("id", "require", "message"))
        if m is None:
            return None
        cid = self.ident(m.entries.get("id"), f"{where}.id", RULE_ID) or ""
        here = f"check '{cid}'" if cid else where
        message = self.text(m.entries.get("message"), f"{here} message")
        citations = self.citations(m.entries.get("citation"), f"{here} citation") if "citation" in m.entries else ()
        require = self.condition(m.entries["require"], here, "") if "require" in m.entries else None
        if not cid or message is None or citations is None or require is None:
            return None
        return Check(cid, require, message, citations, self.pos(m, f"checks.{cid}"), _names(require))

    def _then(self, value: Value | None, here: str, rid: str) -> Then | None:
        m = self.mapping(value, f"{here} then", THEN_KEYS, rule_id=rid)
        if m is None:
            return None
        e = m.entries
        if not e:
            self.problem(m, f"{here} then is empty: a rule must set or add something", key="then", rule_id=rid)
            return None
        commanders: tuple[Commander, ...] | None = None
        if "commanders" in e:
            found = []
            for item in self.listing(e["commanders"], f"{here} commanders", rid):
                cm = self.mapping(item, f"{here} commander", COMMANDER_KEYS, COMMANDER_KEYS, rid)
                if cm is None:
                    continue
                role = self.text(cm.entries.get("role"), f"{here} commander role", rid)
                who = self.text(cm.entries.get("who"), f"{here} commander who", rid)
                if role and who:
                    found.append(Commander(role, who))
            commanders = tuple(found)
        lists = {name: self.id_list(e.get(name), f"{here} {name}", rid) for name in ("units", "groups", "obligations")}
        where: dict[str, Pos] = {}
        for name, pairs in lists.items():
            where.update(self.refs(name, pairs))
        level = self.text(e.get("level"), f"{here} level", rid) if "level" in e else None
        lead = self.text(e.get("lead"), f"{here} lead", rid) if "lead" in e else None
        if level is not None:
            where[f"level:{level}"] = self.pos(e["level"], "level")
        if lead is not None:
            where[f"lead:{lead}"] = self.pos(e["lead"], "lead")
        return Then(
            level=level,
            command_tier=self.text(e.get("command_tier"), f"{here} command_tier", rid) if "command_tier" in e else None,
            commanders=commanders,
            lead=lead,
            units=tuple(i for i, _ in lists["units"]),
            groups=tuple(i for i, _ in lists["groups"]),
            obligations=tuple(i for i, _ in lists["obligations"]),
            where=where,
        )

    # -- conditions ------------------------------------------------------------------------------
    def condition(self, value: Value, here: str, rid: str) -> Condition | None:
        if not isinstance(value, LMap) or len(value.entries) != 1:
            self.problem(
                value,
                f"{here}: a condition is one of all/any/not or one comparison 'input: {{op: value}}', not {describe(value) if not isinstance(value, LMap) else f'a mapping with {len(value.entries)} keys'} (use all: [...] to join several)",
                key="when",
                rule_id=rid,
            )
            return None
        key, inner = next(iter(value.entries.items()))
        pos = self.pos(value, key)
        if key in ("all", "any"):
            items = self.listing(inner, f"{here} {key}", rid)
            if not items and key == "any":
                # `any: []` could never hold; `all: []` always holds: the unconditional rule.
                self.problem(
                    inner,
                    f"{here}: 'any' needs at least one condition (an unconditional rule is `all: []`)",
                    key=key,
                    rule_id=rid,
                )
                return None
            parsed = [self.condition(item, here, rid) for item in items]
            if any(p is None for p in parsed):
                return None
            conds = tuple(p for p in parsed if p is not None)
            return AllOf(conds, pos) if key == "all" else AnyOf(conds, pos)
        if key == "not":
            item = self.condition(inner, here, rid)
            return Not(item, pos) if item is not None else None
        return self._comparison(key, inner, value, here, rid)

    def _comparison(self, name: str, inner: Value, at: LMap, here: str, rid: str) -> Condition | None:
        if isinstance(inner, LScalar):
            ops: list[tuple[str, Value, tuple[int, int]]] = [("eq", inner, (inner.line, inner.column))]
        elif isinstance(inner, LMap):
            if not inner.entries:
                self.problem(inner, f"{here}: comparison on '{name}' has no operator", key=name, rule_id=rid)
                return None
            ops = [(op, v, inner.keys[op]) for op, v in inner.entries.items()]
        else:
            self.problem(
                inner,
                f"{here}: comparison on '{name}' must be a value or {{operator: value}}, not a list (use 'in: [...]')",
                key=name,
                rule_id=rid,
            )
            return None
        out: list[Condition] = []
        for op, operand_value, op_at in ops:
            if op not in words.ALL_OPERATORS:
                self.problem(
                    op_at,
                    f"{here}: unknown operator '{op}' on '{name}'",
                    key=f"{name}.{op}",
                    rule_id=rid,
                    suggestion=closest(op, words.ALL_OPERATORS),
                )
                continue
            sym = words.symbolic(op, self.boundary)
            operand = self._operand(sym, operand_value, here, name, rid)
            if operand is None:
                continue
            out.append(Comparison(name, sym, operand, op, Pos(self.path, op_at[0], op_at[1], f"{name}.{op}")))
        if len(out) != len(ops):
            return None
        return out[0] if len(out) == 1 else AllOf(tuple(out), self.pos(at, name))

    def _operand(self, op: str, value: Value, here: str, name: str, rid: str) -> Operand | None:
        if op in ("in", "between"):
            items = self.listing(value, f"{here} {name} {op}", rid)
            scalars: list[Scalar] = []
            for item in items:
                if isinstance(item, LScalar) and isinstance(item.value, (int, float, bool, str)):
                    scalars.append(item.value)
                else:
                    self.problem(
                        item,
                        f"{here}: '{op}' on '{name}' takes plain values, not {describe(item)}",
                        key=name,
                        rule_id=rid,
                    )
                    return None
            if op == "between" and len(scalars) != 2:
                self.problem(value, f"{here}: 'between' on '{name}' takes [low, high]", key=name, rule_id=rid)
                return None
            if op == "in" and not scalars:
                self.problem(value, f"{here}: 'in' on '{name}' needs at least one value", key=name, rule_id=rid)
                return None
            return tuple(scalars)
        if isinstance(value, LMap):
            m = self.mapping(value, f"{here} {name} operand", ("input",), ("input",), rid)
            other = self.text(m.entries.get("input"), f"{here} {name} operand input", rid) if m else None
            return InputRef(other) if other else None
        if isinstance(value, LScalar) and isinstance(value.value, (int, float, bool, str)):
            return value.value
        self.problem(
            value,
            f"{here}: operand of '{op}' on '{name}' must be a value or {{input: NAME}}, not {describe(value)}",
            key=name,
            rule_id=rid,
        )
        return None
