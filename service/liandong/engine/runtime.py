"""The one place that touches durable-rules: registering rulesets and firing them.

durable-rules is not thread-safe, and its Host starts background timer threads that dispatch
rulesets concurrently with callers. We use neither timers nor queued actions, so those threads are
not started, and every call into the engine holds one lock. Each evaluation runs in a session of
its own whose state is deleted afterwards: a ruleset holds at most 1024 live sessions.

`fire` drives durable-rules' own C calls in the order `Host.assert_fact` makes them (assert the
fact, start the first action, and per action update the state and complete it, which starts the
next) without the per-action Python objects the Host builds for actions we do not need: a profile
showed those, not the matching, as most of the engine's time. Same calls, same arguments, same
results; docs/performance.md has the figures.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable, Mapping
from typing import Any

import durable_rules_engine  # type: ignore[import-not-found]  # durable-rules' C extension, untyped
from durable import engine as durable_engine

from liandong.engine.compile import ANCHOR_FIELD, ANCHOR_RULE, CompiledRuleSet
from liandong.errors import EngineFailure


class _Host(durable_engine.Host):  # type: ignore[misc]
    def _run(self) -> None:
        """Start no dispatch threads: actions run synchronously inside assert_fact."""


class DurableRuntime:
    """A durable-rules host used by one thread at a time."""

    def __init__(self) -> None:
        self._host = _Host()
        self._lock = threading.Lock()
        self._sids = itertools.count(1)
        self._fired: list[str] = []
        self._registered: set[str] = set()
        self._handles: dict[str, tuple[int, frozenset[str]]] = {}  # durable name -> (C handle, rule names)

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
                raise EngineFailure(f"durable-rules refused rule set '{compiled.document.ruleset}' version '{compiled.document.version}': {exc}", ruleset=compiled.document.ruleset) from exc
            self._registered.add(compiled.name)
            self._handles[compiled.name] = (self._host.get_ruleset(compiled.name)._handle, frozenset(compiled.rules))

    def fire(self, name: str, fact: Mapping[str, object]) -> tuple[str, ...]:
        """The ids of every rule of ruleset `name` whose conditions the fact meets."""
        with self._lock:
            sid = str(next(self._sids))
            self._fired = []
            try:
                self._assert(name, {**fact, ANCHOR_FIELD: True, "sid": sid})
            except Exception as exc:  # MessageNotHandledException included: the anchor always matches
                raise EngineFailure(f"durable-rules failed evaluating '{name}': {exc}") from exc
            finally:
                # Always free the session: a leaked one counts towards the 1024-session limit.
                try:
                    self._host.delete_state(name, sid)
                except Exception as exc:
                    raise EngineFailure(f"durable-rules could not free session {sid} of '{name}': {exc}") from exc
            return tuple(self._fired)

    def _assert(self, name: str, fact: Mapping[str, object]) -> None:
        """What `Host.assert_fact(name, fact)` does for rules whose actions only record their name."""
        if name not in self._handles:  # not registered here: the Host raises its own error
            self._host.assert_fact(name, fact)
            return
        handle, rule_names = self._handles[name]
        text = fact_json(fact)
        result = durable_rules_engine.assert_fact(handle, text)
        if result[0] == 1:
            raise durable_engine.MessageNotHandledException(fact)
        if result[0] == 2:
            raise durable_engine.MessageObservedException(fact)
        state_handle = 0 if result[0] == 3 else result[1]
        started = durable_rules_engine.start_action_for_state(handle, state_handle)
        if not started:
            return
        # The Host parses the session state and writes it back unchanged after every action.
        state = json.dumps(json.loads(started[0]), ensure_ascii=False)
        message: str | None = started[1]
        while message:
            rule = _action_name(message, rule_names)
            if rule != ANCHOR_RULE:
                self._fired.append(rule)
            try:
                durable_rules_engine.update_state(handle, state)
                message = durable_rules_engine.complete_and_start_action(handle, state_handle)
            except BaseException:
                durable_rules_engine.abandon_action(handle, state_handle)
                raise

    @property
    def registered(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._registered)


def fact_json(fact: Mapping[str, object]) -> str:
    """The fact as JSON that durable-rules can read. Its reader refuses a number with an exponent
    but no decimal point (error 204), which is how Python writes 1e-05 and 1e+16: those are written
    1.0e-05 and 1.0e+16 instead (same value). Facts are flat, so this is per value."""
    odd = [k for k, v in fact.items() if type(v) is float and "e" in repr(v) and "." not in repr(v).partition("e")[0]]
    if not odd:
        return json.dumps(fact, ensure_ascii=False)
    parts = []
    for key, value in fact.items():
        if key in odd:
            mantissa, _, exponent = repr(value).partition("e")
            shown = f"{mantissa}.0e{exponent}"
        else:
            shown = json.dumps(value, ensure_ascii=False)
        parts.append(f"{json.dumps(key, ensure_ascii=False)}: {shown}")
    return "{" + ", ".join(parts) + "}"


def _action_name(message: str, rule_names: frozenset[str]) -> str:
    """The rule an action message is for: its one key, `{"<rule>":{"m":...}}`."""
    if message.startswith('{"'):
        end = message.find('"', 2)
        if message[2:end] in rule_names:  # rule names need no JSON escapes
            return message[2:end]
    parsed: dict[str, object] = json.loads(message)
    return next(iter(parsed))
