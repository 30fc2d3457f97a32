"""The one place that touches durable-rules: registering rulesets and firing them.

durable-rules is not thread-safe, and its Host starts background timer threads that dispatch
rulesets concurrently with callers. We use neither timers nor queued actions, so those threads are
not started, and every call into the engine holds one lock. Each evaluation runs in a session of
its own whose state is deleted afterwards: a ruleset holds at most 1024 live sessions.

`fire` drives durable-rules' own C calls as `Host.assert_fact` does (assert the fact, start the
first action, complete each action, which starts the next) without the per-action Python objects
the Host builds for actions we do not need: a profile showed those, not the matching, as most of
the engine's time. docs/performance.md has the figures. Two of the Host's calls are left out
because they cannot change what fires:

- `update_state` after each action: the Host writes the session state back in case an action
  changed it. Ours change nothing, and the state message (`sid`, `id`, `$s`) has no property any
  compiled rule tests (input names, which may not be `sid` or `id`, presence flags and the anchor),
  so re-asserting it reaches no rule: the engine only deleted and stored it again.
- the Host's Python layers around `delete_state`: the same C call is made directly.

The texts passed are written directly rather than through `json.dumps` where that is cheaper: the
fact, member by member, for the flat facts of a checked incident. It is the exact text the Host's
`json.dumps` writes; anything else takes that general path. tests/test_engine_host_order.py checks
the calls and their results against the Host's own for every bundled rule set.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable, Mapping
from json.encoder import encode_basestring  # the C function json.dumps itself uses
from typing import Any

import durable_rules_engine  # type: ignore[import-not-found]  # durable-rules' C extension, untyped
from durable import engine as durable_engine

from liandong.engine.compile import ANCHOR_FIELD, ANCHOR_RULE, CompiledRuleSet
from liandong.errors import EngineFailure


class _Ruleset(durable_engine.Ruleset):  # type: ignore[misc]
    """durable-rules' Ruleset, with its definition written by `definition_json`: the base class
    writes it with json.dumps, as 1e-05 for a threshold of 0.00001, which durable-rules' own reader
    then refuses (error 204). Otherwise what `Ruleset.__init__` does for callable actions."""

    def __init__(self, name: str, host: durable_engine.Host, definition: dict[str, Any]) -> None:
        self._actions = {rule_name: durable_engine.Promise(rule.pop("run")) for rule_name, rule in definition.items()}
        self._name = name
        self._host = host
        self._handle = durable_rules_engine.create_ruleset(name, definition_json(definition))
        self._definition = definition


class _Host(durable_engine.Host):  # type: ignore[misc]
    def _run(self) -> None:
        """Start no dispatch threads: actions run synchronously inside assert_fact."""

    def register_rulesets(self, definitions: dict[str, dict[str, Any]]) -> None:
        """`Host.register_rulesets` for plain rulesets (no statecharts or flowcharts, no storage
        callbacks), built as `_Ruleset`s."""
        for name, definition in definitions.items():
            if name in self._ruleset_directory:
                raise Exception(f"Ruleset with name {name} already registered")
            ruleset = _Ruleset(name, self, definition)
            self._ruleset_directory[name] = ruleset
            self._ruleset_list.append(ruleset)


class DurableRuntime:
    """A durable-rules host used by one thread at a time."""

    def __init__(self) -> None:
        self._host = _Host()
        self._lock = threading.Lock()
        self._sids = itertools.count(1)
        self._fired: list[str] = []
        self._registered: set[str] = set()
        # durable name -> (C handle, rule names, the fact's keys as JSON member prefixes)
        self._handles: dict[str, tuple[int, frozenset[str], dict[str, str]]] = {}

    def _action(self, rule_id: str) -> Callable[[Any], None]:
        def record(_closure: Any) -> None:
            if rule_id != ANCHOR_RULE:
                self._fired.append(rule_id)

        return record

    def register(self, compiled: CompiledRuleSet) -> None:
        """Register a compiled ruleset once; the same content registered again is a no-op."""
        with self._lock:
            if compiled.name in self._registered:
                return
            definition = {rid: {**rule, "run": self._action(rid)} for rid, rule in compiled.rules.items()}
            try:
                self._host.register_rulesets({compiled.name: definition})
            except Exception as exc:  # the engine reports bad definitions as bare Exceptions
                raise EngineFailure(
                    f"durable-rules refused rule set '{compiled.document.ruleset}' version '{compiled.document.version}': {exc}",
                    ruleset=compiled.document.ruleset,
                ) from exc
            self._registered.add(compiled.name)
            keys = [*compiled.inputs.name_list, *(flag for flag, _ in compiled.inputs.presence)]
            self._handles[compiled.name] = (
                self._host.get_ruleset(compiled.name)._handle,
                frozenset(compiled.rules),
                {key: f"{encode_basestring(key)}: " for key in keys},
            )

    def fire(self, name: str, fact: Mapping[str, object]) -> tuple[str, ...]:
        """The ids of every rule of ruleset `name` whose conditions the fact meets."""
        with self._lock:
            sid = str(next(self._sids))
            fired: list[str] = []
            self._fired = fired  # the Host's actions record here too
            registered = self._handles.get(name)
            try:
                if registered is None:  # not registered here: the Host raises its own error
                    self._host.assert_fact(name, _in_session(fact, sid))
                else:
                    self._assert(registered, fact, sid, fired)
            except Exception as exc:  # MessageNotHandledException included: the anchor always matches
                raise EngineFailure(f"durable-rules failed evaluating '{name}': {exc}") from exc
            finally:
                # Always free the session: a leaked one counts towards the 1024-session limit.
                try:
                    if registered is None:
                        self._host.delete_state(name, sid)
                    else:
                        durable_rules_engine.delete_state(registered[0], sid)  # what Host.delete_state calls
                except Exception as exc:
                    raise EngineFailure(f"durable-rules could not free session {sid} of '{name}': {exc}") from exc
            return tuple(fired)

    @staticmethod
    def _assert(
        registered: tuple[int, frozenset[str], dict[str, str]], fact: Mapping[str, object], sid: str, fired: list[str]
    ) -> None:
        """What `Host.assert_fact(<ruleset>, <the fact in session sid>)` does for rules whose actions
        only record their name, recording them in `fired`."""
        handle, rule_names, prefixes = registered
        result = durable_rules_engine.assert_fact(handle, _session_fact_json(fact, sid, prefixes))
        if result[0] == 1:
            raise durable_engine.MessageNotHandledException(_in_session(fact, sid))
        if result[0] == 2:
            raise durable_engine.MessageObservedException(_in_session(fact, sid))
        state_handle = 0 if result[0] == 3 else result[1]
        started = durable_rules_engine.start_action_for_state(handle, state_handle)
        if not started:
            return
        complete_and_start_action = durable_rules_engine.complete_and_start_action
        message: str | None = started[1]
        while message:
            # The rule an action message is for is its one key, `{"<rule>":{"m":...}}`; rule names
            # need no JSON escapes, so a known name read off the front is the key.
            rule = message[2 : message.find('"', 2)]
            if rule not in rule_names or not message.startswith('{"'):
                rule = _action_name(message)
            if rule != ANCHOR_RULE:
                fired.append(rule)
            try:
                message = complete_and_start_action(handle, state_handle)
            except BaseException:
                durable_rules_engine.abandon_action(handle, state_handle)
                raise

    @property
    def registered(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._registered)


# What `json.dumps(value, ensure_ascii=False)` uses, built once instead of per call.
_ENCODER = json.JSONEncoder(ensure_ascii=False)
_ANCHOR_MEMBER = f"{encode_basestring(ANCHOR_FIELD)}: true"
_NO_PREFIXES: Mapping[str, str] = {}


def _in_session(fact: Mapping[str, object], sid: str) -> dict[str, object]:
    """The fact as asserted: with the anchor field, in its own session."""
    return {**fact, ANCHOR_FIELD: True, "sid": sid}


def _session_fact_json(fact: Mapping[str, object], sid: str, prefixes: Mapping[str, str] | None = None) -> str:
    """`fact_json(_in_session(fact, sid))`, without building that dict when the fact has neither
    key already (input ids start with a letter, so only an input named `sid` could). `prefixes`
    holds the `"key": ` texts of keys the fact is expected to have, written once."""
    if ANCHOR_FIELD not in fact and "sid" not in fact:
        members = _members(fact, prefixes)
        if members is not None:
            members.append(_ANCHOR_MEMBER)
            members.append(f'"sid": "{sid}"')  # the sid is digits: nothing to escape
            return "{" + ", ".join(members) + "}"
    return fact_json(_in_session(fact, sid))


def fact_json(fact: Mapping[str, object]) -> str:
    """The fact as JSON that durable-rules can read. Its reader refuses a number with an exponent
    but no decimal point (error 204), which is how Python writes 1e-05 and 1e+16: those are written
    1.0e-05 and 1.0e+16 instead (same value). Facts are flat, so this is per value."""
    members = _members(fact)
    if members is not None:
        return "{" + ", ".join(members) + "}"
    return _fact_json_general(fact)


def definition_json(value: object) -> str:
    """A ruleset definition as `json.dumps(value, ensure_ascii=False)` writes it, but with every
    float that json.dumps writes with an exponent and no decimal point written as fact_json does."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_ENCODER.encode(str(k))}: {definition_json(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(definition_json(v) for v in value) + "]"
    if type(value) is float:
        shown = float.__repr__(value)
        mantissa, exponent_mark, exponent = shown.partition("e")
        if exponent_mark and "." not in mantissa:
            return f"{mantissa}.0e{exponent}"
    return _ENCODER.encode(value)


def _members(fact: Mapping[str, object], prefixes: Mapping[str, str] | None = None) -> list[str] | None:
    """The `"key": value` texts of a flat fact, as `json.dumps(fact, ensure_ascii=False)` writes
    them (exponents as fact_json says), or None if a key or value needs the general path. A key
    found in `prefixes` is written as given there."""
    members: list[str] = []
    append = members.append
    known = prefixes if prefixes is not None else _NO_PREFIXES
    for key, value in fact.items():
        prefix = known.get(key)  # a key of another type than str is simply not there
        if prefix is None:
            if type(key) is not str:
                return None
            prefix = f"{encode_basestring(key)}: "
        if value is True:
            append(prefix + "true")
        elif value is False:
            append(prefix + "false")
        elif type(value) is int:
            append(prefix + int.__repr__(value))
        elif type(value) is str:
            append(prefix + encode_basestring(value))
        elif type(value) is float:
            shown = float.__repr__(value)
            if "e" in shown:
                mantissa, _, exponent = shown.partition("e")
                if "." not in mantissa:
                    shown = f"{mantissa}.0e{exponent}"
            elif "n" in shown:  # inf or nan, which JSON writes Infinity or NaN
                shown = _ENCODER.encode(value)
            append(prefix + shown)
        elif value is None:
            append(prefix + "null")
        else:
            return None
    return members


def _fact_json_general(fact: Mapping[str, object]) -> str:
    """fact_json for any fact `json.dumps` can write."""
    odd = [k for k, v in fact.items() if type(v) is float and "e" in repr(v) and "." not in repr(v).partition("e")[0]]
    if not odd:
        return _ENCODER.encode(fact)
    parts = []
    for key, value in fact.items():
        if key in odd:
            mantissa, _, exponent = repr(value).partition("e")
            shown = f"{mantissa}.0e{exponent}"
        else:
            shown = _ENCODER.encode(value)
        parts.append(f"{_ENCODER.encode(key)}: {shown}")
    return "{" + ", ".join(parts) + "}"


def _action_name(message: str) -> str:
    """The rule an action message is for, read as JSON: its one key."""
    parsed: dict[str, object] = json.loads(message)
    return next(iter(parsed))
