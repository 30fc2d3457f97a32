"""Handlers written against grpc's sync servicer API, served by the asyncio server (grpc.aio).

The service's handlers are plain functions of (request, grpc.ServicerContext): the web door calls
the same ones in-process (web/calls.py), and the incident and admin services block on their SQL
store and on reloads. On the asyncio server they are served in one of two ways:

- `inline`: on the event loop itself, for handlers that only compute (ResponseService): no thread
  hop, no handoff of the GIL between threads;
- `threaded`: in the pool of threads for handlers that block (--max-workers of them), so that the
  loop keeps serving while they wait.

grpc.aio runs sync handlers in its `migration_thread_pool` too, but hands them a context without
`is_active`, `abort_with_status`, or termination callbacks for streams, which these handlers use.
`CallContext` gives them those, over the asyncio context: an abort is raised out of the handler and
sent by the async wrapper, on the loop.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent import futures
from typing import Any, NoReturn

import grpc
import grpc.aio


class Aborted(Exception):
    """A sync handler ended its call with this status (CallContext.abort_with_status)."""

    def __init__(self, st: grpc.Status) -> None:
        super().__init__(st.details)
        self.status = st


class CallContext:
    """What the service's handlers use of grpc.ServicerContext, over a grpc.aio one.

    Safe to use from a pool thread: every method only reads the call's state, and the abort is
    raised (Aborted) for the async wrapper to send."""

    __slots__ = ("_context", "_callbacks", "_ended", "_lock")

    def __init__(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        self._context = context
        self._callbacks: list[Callable[[], None]] = []
        self._ended = False
        self._lock = threading.Lock()  # end() runs on the loop, add_callback() in a pool thread

    def is_active(self) -> bool:
        if self._ended:
            return False
        remaining = self._context.time_remaining()
        return remaining is None or remaining > 0

    def time_remaining(self) -> float | None:
        return self._context.time_remaining()

    def abort_with_status(self, st: grpc.Status) -> NoReturn:
        raise Aborted(st)

    def add_callback(self, callback: Callable[[], None]) -> bool:
        """The callback runs when the call ends; at once if it has ended already. grpc's own context
        returns False then and never runs it, but handlers ignore that answer (grpc_health's Watch
        then waits for ever on a call that is gone, and holds its pool thread)."""
        with self._lock:
            if not self._ended:
                self._callbacks.append(callback)
                return True
        callback()
        return True

    def invocation_metadata(self) -> Sequence[tuple[str, str | bytes]]:
        return tuple(self._context.invocation_metadata() or ())

    def peer(self) -> str:
        return self._context.peer()

    def auth_context(self) -> dict[str, Any]:
        return dict(self._context.auth_context())

    def peer_identities(self) -> Any:
        return self._context.peer_identities()

    def set_trailing_metadata(self, metadata: Any) -> None:
        self._context.set_trailing_metadata(metadata)

    def end(self) -> None:
        """The call has ended: the handler's callbacks run, once."""
        with self._lock:
            if self._ended:
                return
            self._ended = True
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()


class BlockingCalls:
    """The pool the calls that block run in, and those calls while they are open.

    A call's context is ended when its handler's task ends; but when the server stops, grpc.aio
    can drop a task without running its `finally`, and a handler waiting on its context's callback
    (a health watch) would hold its pool thread for ever, and with it the process's exit. close()
    ends every call still open, then the pool."""

    def __init__(self, pool: futures.ThreadPoolExecutor) -> None:
        self.pool = pool
        self._open: set[CallContext] = set()
        self._lock = threading.Lock()

    def open(self, context: grpc.aio.ServicerContext[Any, Any]) -> CallContext:
        ctx = CallContext(context)
        with self._lock:
            self._open.add(ctx)
        return ctx

    def ended(self, ctx: CallContext) -> None:
        ctx.end()
        with self._lock:
            self._open.discard(ctx)

    def later(self, fn: Callable[..., object], *args: object) -> None:
        """fn(*args) in the pool; here and now once the pool has shut down (a call whose task ends
        after the server stopped still closes its handler's generator)."""
        try:
            self.pool.submit(fn, *args)
        except RuntimeError:  # cannot schedule new futures after shutdown
            fn(*args)

    def close(self) -> None:
        """End every call still open (their handlers' callbacks wake them), then the pool."""
        with self._lock:
            still_open, self._open = list(self._open), set()
        for ctx in still_open:
            ctx.end()
        self.pool.shutdown(wait=False, cancel_futures=True)


def _sync(context: CallContext) -> grpc.ServicerContext:
    return context  # type: ignore[return-value]  # duck-typed: the part of the API the handlers use


Unary = Callable[[Any, grpc.ServicerContext], Any]
Streaming = Callable[[Any, grpc.ServicerContext], Iterator[Any]]


def inline(fn: Unary) -> Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Any]:
    """A unary handler that only computes, run on the event loop."""

    async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        ctx = CallContext(context)
        try:
            return fn(request, _sync(ctx))
        except Aborted as aborted:
            await context.abort_with_status(aborted.status)
        finally:
            ctx.end()

    return call


def threaded(fn: Unary, calls: BlockingCalls) -> Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Any]:
    """A unary handler that may block, run in the pool."""

    async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        ctx = calls.open(context)
        work = calls.pool.submit(contextvars.copy_context().run, fn, request, _sync(ctx))
        try:
            return await asyncio.wrap_future(work)
        except Aborted as aborted:
            await context.abort_with_status(aborted.status)
        finally:
            calls.ended(ctx)  # on a cancel, while the handler may still run: it sees is_active() False

    return call


def threaded_stream(
    fn: Streaming, calls: BlockingCalls
) -> Callable[[Any, grpc.aio.ServicerContext[Any, Any]], AsyncIterator[Any]]:
    """A response-streaming handler that may block: each of its messages is made in the pool.

    When the call ends early (cancel, deadline, server stop) the handler's callbacks run at once
    (they wake its waits), and the generator is closed in the pool once it comes back."""

    async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
        ctx = calls.open(context)
        pool = calls.pool
        run = contextvars.copy_context().run
        items: Iterator[Any] | None = None
        pending: futures.Future[Any] | None = None
        done = object()

        def step(items: Iterator[Any]) -> Any:
            return next(items, done)

        try:
            items = iter(await asyncio.wrap_future(pool.submit(run, fn, request, _sync(ctx))))
            while True:
                pending = pool.submit(run, step, items)
                item = await asyncio.wrap_future(pending)
                pending = None
                if item is done:
                    return
                yield item
        except Aborted as aborted:
            await context.abort_with_status(aborted.status)
        finally:
            calls.ended(ctx)
            if items is not None:
                close = getattr(items, "close", None)
                if close is not None:
                    if pending is None or pending.done():
                        calls.later(run, close)
                    else:  # still making a message: close it when it comes back
                        pending.add_done_callback(lambda _: calls.later(run, close))

    return call


def adapt(handler: grpc.RpcMethodHandler[Any, Any], calls: BlockingCalls) -> grpc.RpcMethodHandler[Any, Any]:
    """A generated sync method handler, served from the pool (unary and response streams)."""
    h: Any = handler
    if h.unary_unary is not None:
        return h._replace(unary_unary=threaded(h.unary_unary, calls))  # type: ignore[no-any-return]
    if h.unary_stream is not None:
        return h._replace(unary_stream=threaded_stream(h.unary_stream, calls))  # type: ignore[no-any-return]
    raise ValueError("request-streaming sync handlers are not served from the pool")


class _Collector:
    """Stands in for a server in a generated `add_*Servicer_to_server`, to take its handlers."""

    def __init__(self) -> None:
        self.generic: list[grpc.GenericRpcHandler] = []
        self.registered: dict[str, dict[str, grpc.RpcMethodHandler[Any, Any]]] = {}

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        self.generic.extend(handlers)

    def add_registered_method_handlers(
        self, service: str, handlers: dict[str, grpc.RpcMethodHandler[Any, Any]]
    ) -> None:
        self.registered[service] = dict(handlers)


def add_threaded(server: grpc.aio.Server, calls: BlockingCalls, register: Callable[[Any], None]) -> None:
    """Serve what `register(server)` (a generated `add_*Servicer_to_server`) adds, every method in the pool."""
    collector = _Collector()
    register(collector)
    if not collector.registered:
        raise ValueError("the registration added no method handlers by name")
    for service, handlers in collector.registered.items():
        adapted = {name: adapt(h, calls) for name, h in handlers.items()}
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, adapted),))
        server.add_registered_method_handlers(service, adapted)
