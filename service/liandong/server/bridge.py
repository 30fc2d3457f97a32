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

    __slots__ = ("_context", "_callbacks", "_ended")

    def __init__(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        self._context = context
        self._callbacks: list[Callable[[], None]] = []
        self._ended = False

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
        if self._ended:
            return False
        self._callbacks.append(callback)
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
        if self._ended:
            return
        self._ended = True
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()


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


def threaded(fn: Unary, pool: futures.Executor) -> Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Any]:
    """A unary handler that may block, run in the pool."""

    async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        ctx = CallContext(context)
        work = pool.submit(contextvars.copy_context().run, fn, request, _sync(ctx))
        try:
            return await asyncio.wrap_future(work)
        except Aborted as aborted:
            await context.abort_with_status(aborted.status)
        finally:
            ctx.end()  # on a cancel, while the handler may still run: it sees is_active() False

    return call


def threaded_stream(
    fn: Streaming, pool: futures.Executor
) -> Callable[[Any, grpc.aio.ServicerContext[Any, Any]], AsyncIterator[Any]]:
    """A response-streaming handler that may block: each of its messages is made in the pool.

    When the call ends early (cancel, deadline, server stop) the handler's callbacks run at once
    (they wake its waits), and the generator is closed in the pool once it comes back."""

    async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
        ctx = CallContext(context)
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
            ctx.end()
            if items is not None:
                close = getattr(items, "close", None)
                if close is not None:
                    if pending is None or pending.done():
                        pool.submit(run, close)
                    else:  # still making a message: close it when it comes back
                        pending.add_done_callback(lambda _: pool.submit(run, close))

    return call


def adapt(handler: grpc.RpcMethodHandler[Any, Any], pool: futures.Executor) -> grpc.RpcMethodHandler[Any, Any]:
    """A generated sync method handler, served from the pool (unary and response streams)."""
    h: Any = handler
    if h.unary_unary is not None:
        return h._replace(unary_unary=threaded(h.unary_unary, pool))  # type: ignore[no-any-return]
    if h.unary_stream is not None:
        return h._replace(unary_stream=threaded_stream(h.unary_stream, pool))  # type: ignore[no-any-return]
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


def add_threaded(server: grpc.aio.Server, pool: futures.Executor, register: Callable[[Any], None]) -> None:
    """Serve what `register(server)` (a generated `add_*Servicer_to_server`) adds, every method in the pool."""
    collector = _Collector()
    register(collector)
    if not collector.registered:
        raise ValueError("the registration added no method handlers by name")
    for service, handlers in collector.registered.items():
        adapted = {name: adapt(h, pool) for name, h in handlers.items()}
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, adapted),))
        server.add_registered_method_handlers(service, adapted)
