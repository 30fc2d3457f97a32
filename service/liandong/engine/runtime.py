"""The one place that touches durable-rules: registering rulesets and firing them.

durable-rules is not thread-safe, and its Host starts background timer threads that dispatch
rulesets concurrently with callers. We use neither timers nor queued actions, so those threads are
not started, and every call into the engine holds one lock. Each evaluation runs in a session of
its own whose state is deleted afterwards: a ruleset holds at most 1024 live sessions.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Mapping
from typing import Any

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

    def fire(self, name: str, fact: Mapping[str, object]) -> tuple[str, ...]:
        """The ids of every rule of ruleset `name` whose conditions the fact meets."""
        with self._lock:
            sid = str(next(self._sids))
            self._fired = []
            try:
                self._host.assert_fact(name, {**fact, ANCHOR_FIELD: True, "sid": sid})
            except Exception as exc:  # MessageNotHandledException included: the anchor always matches
                raise EngineFailure(f"durable-rules failed evaluating '{name}': {exc}") from exc
            finally:
                # Always free the session: a leaked one counts towards the 1024-session limit.
                try:
                    self._host.delete_state(name, sid)
                except Exception as exc:
                    raise EngineFailure(f"durable-rules could not free session {sid} of '{name}': {exc}") from exc
            return tuple(self._fired)

    @property
    def registered(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._registered)
