"""IncidentService under /v1 in protobuf's JSON mapping, through the very IncidentServicer gRPC calls.

Routes (google.api.http conventions; the proto is not annotated, this table is the mapping):

    POST /v1/incidents/{incident_id}:report            Report           body: ReportRequest
    POST /v1/incidents/{incident_id}:setCommandLevel   SetCommandLevel  body: SetCommandLevelRequest
    POST /v1/incidents/{incident_id}:acknowledge       Acknowledge      body: AcknowledgeRequest
    POST /v1/incidents/{incident_id}:close             Close            body: CloseRequest
    GET  /v1/incidents/{incident_id}                   GetIncident
    GET  /v1/incidents?status=&type=&levelAtLeast=&updatedSince=&pageSize=&pageToken=   ListIncidents
    GET  /v1/incidents:watch?incidentId=&type=&kinds=&afterSequence=   WatchIncidents, as server-sent events

The id in the path wins over one in the body (a body naming another incident is INVALID_ARGUMENT).

Who calls: the HTTP `Authorization: Bearer TOKEN` header, looked up in the same identities file as
gRPC's bearer metadata, with the same roles. Without an identities file, an HTTP port on loopback in
plaintext treats every caller as `local` (as gRPC does on loopback plaintext); anywhere else every
incident call is UNAUTHENTICATED. Client certificates name no caller over HTTP (uvicorn does not hand
the peer certificate to the application): use a token.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, cast

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive

from liandong.server import status
from liandong.server.incidents import IncidentServicer
from liandong.server.web.calls import Aborted, LocalContext
from liandong.v1 import incidents_pb2 as ipb

JSON = "application/json; charset=utf-8"


class HttpContext(LocalContext):
    """A call from HTTP: the bearer header as gRPC metadata, no peer certificate, active until the client goes."""

    def __init__(self, authorization: str = "") -> None:
        self.authorization = authorization
        self.active = threading.Event()
        self.active.set()
        self._callbacks: list[Callable[[], object]] = []

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", self.authorization),) if self.authorization else ()

    def auth_context(self) -> Mapping[str, Any]:
        return {}

    def is_active(self) -> bool:
        return self.active.is_set()

    def add_callback(self, callback: object) -> bool:
        self._callbacks.append(cast(Callable[[], object], callback))
        return True

    def cancel(self) -> None:
        """The client went: the call ends, and whatever it waits on is woken."""
        self.active.clear()
        for callback in self._callbacks:
            callback()


def context_of(request: Request) -> HttpContext:
    return HttpContext(request.headers.get("authorization", ""))


class IncidentCalls:
    """The IncidentService RPCs in-process; Aborted with the gRPC status when refused."""

    def __init__(self, servicer: IncidentServicer) -> None:
        self.servicer = servicer

    def _ctx(self, context: HttpContext) -> grpc.ServicerContext:
        return cast(grpc.ServicerContext, context)

    def report(self, request: ipb.ReportRequest, context: HttpContext) -> ipb.IncidentState:
        return self.servicer.Report(request, self._ctx(context))

    def set_command_level(self, request: ipb.SetCommandLevelRequest, context: HttpContext) -> ipb.IncidentState:
        return self.servicer.SetCommandLevel(request, self._ctx(context))

    def acknowledge(self, request: ipb.AcknowledgeRequest, context: HttpContext) -> ipb.IncidentState:
        return self.servicer.Acknowledge(request, self._ctx(context))

    def close(self, request: ipb.CloseRequest, context: HttpContext) -> ipb.IncidentState:
        return self.servicer.Close(request, self._ctx(context))

    def get(self, incident_id: str, context: HttpContext) -> ipb.IncidentRecord:
        return self.servicer.GetIncident(ipb.GetIncidentRequest(incident_id=incident_id), self._ctx(context))

    def list_incidents(self, request: ipb.ListIncidentsRequest, context: HttpContext) -> ipb.ListIncidentsResponse:
        return self.servicer.ListIncidents(request, self._ctx(context))

    def watch(self, request: ipb.WatchIncidentsRequest, context: HttpContext) -> Any:
        return self.servicer.WatchIncidents(request, self._ctx(context))

    def levels(self) -> list[tuple[str, str]]:
        """(code, name) of every level of the loaded rule sets, for the pages' level filter."""
        serving = self.servicer.state.serving
        if serving is None:
            return []
        seen: dict[str, tuple[int, str]] = {}
        for name in serving.book.rulesets():
            for compiled in serving.book.versions(name):
                for level in compiled.document.levels:
                    seen.setdefault(level.code, (level.rank, level.name))
        return [(code, name) for code, (_, name) in sorted(seen.items(), key=lambda kv: (kv[1][0], kv[0]))]

    def types(self) -> list[str]:
        """The incident types the loaded rule sets claim."""
        serving = self.servicer.state.serving
        if serving is None:
            return []
        return sorted(
            {
                t
                for name in serving.book.rulesets()
                for c in serving.book.versions(name)
                for t in c.document.incident_types
            }
        )


def _json(message: Message) -> Response:
    return Response(json_format.MessageToJson(message, ensure_ascii=False), media_type=JSON)


def _refused(exc: Aborted) -> Response:
    return Response(exc.json(), status_code=exc.http_status(), media_type=JSON)


def _bad(field: str, description: str) -> Aborted:
    return Aborted(status.bad_request(field, description))


def _query_message(request: Request, message: Message, repeated: tuple[str, ...] = ()) -> None:
    """Query parameters into a request message, by the JSON names (or proto names) of its fields."""
    data: dict[str, object] = {}
    for key in request.query_params:
        values = request.query_params.getlist(key)
        data[key] = values if key in repeated else values[-1]
    try:
        json_format.ParseDict(data, message)
    except json_format.ParseError as exc:
        raise _bad("request", f"query cannot be read: {exc}") from None


def routes(calls: IncidentCalls, max_body_bytes: int) -> list[Route]:
    async def answer(work: Callable[[], Message]) -> Response:
        try:
            return _json(await run_in_threadpool(work))
        except Aborted as exc:
            return _refused(exc)

    async def body_of(request: Request, message: Any) -> Message:
        body = await request.body()
        if len(body) > max_body_bytes:
            raise _bad("request", f"{len(body)} bytes, over the limit of {max_body_bytes} (--max-message-bytes)")
        try:
            json_format.Parse(body or b"{}", message)
        except (json_format.ParseError, UnicodeDecodeError) as exc:
            raise _bad("request", f"cannot be decoded: {exc}") from None
        path_id = request.path_params["incident_id"]
        given = message.incident_id
        if given and given != path_id:
            raise _bad("incident_id", f"the body names incident '{given}', the path '{path_id}'")
        message.incident_id = path_id
        return cast(Message, message)

    def changing(message_type: type[Message], method: Callable[[Any, HttpContext], Message]) -> Any:
        async def endpoint(request: Request) -> Response:
            try:
                message = await body_of(request, message_type())
            except Aborted as exc:
                return _refused(exc)
            context = context_of(request)
            return await answer(lambda: method(message, context))

        return endpoint

    actions: dict[str, Any] = {
        "report": changing(ipb.ReportRequest, calls.report),
        "setCommandLevel": changing(ipb.SetCommandLevelRequest, calls.set_command_level),
        "acknowledge": changing(ipb.AcknowledgeRequest, calls.acknowledge),
        "close": changing(ipb.CloseRequest, calls.close),
    }

    async def post_action(request: Request) -> Response:
        # Starlette's path converters cannot split "{id}:verb", so the verb is cut here (ids may hold ':').
        target = request.path_params["target"]
        incident_id, sep, verb = target.rpartition(":")
        endpoint = actions.get(verb) if sep and incident_id else None
        if endpoint is None:
            return _refused(
                Aborted(
                    status.plain(
                        grpc.StatusCode.NOT_FOUND,
                        f"no method '{verb}' on /v1/incidents (known: {', '.join(actions)})",
                    )
                )
            )
        request.path_params["incident_id"] = incident_id
        result: Response = await endpoint(request)
        return result

    async def get_incident(request: Request) -> Response:
        incident_id = request.path_params["target"]
        context = context_of(request)
        return await answer(lambda: calls.get(incident_id, context))

    async def list_incidents(request: Request) -> Response:
        message = ipb.ListIncidentsRequest()
        try:
            _query_message(request, message)
        except Aborted as exc:
            return _refused(exc)
        context = context_of(request)
        return await answer(lambda: calls.list_incidents(message, context))

    async def watch(request: Request) -> Response:
        query = request.query_params
        message = ipb.WatchIncidentsRequest(
            filter=ipb.IncidentFilter(
                incident_id=query.get("incidentId", ""), type=query.get("type", ""), kinds=query.getlist("kinds")
            )
        )
        after = query.get("afterSequence", "") or request.headers.get("last-event-id", "")
        if after:
            if not after.isdigit():
                return _refused(_bad("after_sequence", f"'{after}' is not a sequence number"))
            message.after_sequence = int(after)
        return sse(calls, message, context_of(request), request.receive)

    return [
        Route("/v1/incidents", list_incidents, methods=["GET"]),
        Route("/v1/incidents:watch", watch, methods=["GET"]),
        Route("/v1/incidents/{target:path}", post_action, methods=["POST"]),
        Route("/v1/incidents/{target:path}", get_incident, methods=["GET"]),
    ]


def sse(
    calls: IncidentCalls, message: ipb.WatchIncidentsRequest, context: HttpContext, receive: Receive
) -> StreamingResponse:
    """WatchIncidents as server-sent events: each IncidentEvent as JSON, its sequence as the event id
    (a reconnecting EventSource resumes after it); a refusal is one `error` event with the google.rpc.Status."""
    events = calls.watch(message, context)

    def step() -> str | None:
        try:
            event = next(events, None)
        except Aborted as exc:
            return f"event: error\ndata: {exc.json()}\n\n"
        if event is None:
            return None
        data = json_format.MessageToJson(event, ensure_ascii=False, indent=None)
        return f"id: {event.sequence}\nevent: incident\ndata: {data}\n\n"

    async def gone() -> None:
        # Starlette sends a stream without listening for the client leaving, and the watch thread
        # waits for events: so this listens, and ends the watch when the client goes.
        while (await receive())["type"] != "http.disconnect":
            pass
        context.cancel()

    async def stream() -> AsyncIterator[str]:
        listening = asyncio.ensure_future(gone())
        try:
            yield ": watching\n\n"  # the headers go out at once: EventSource opens
            while True:
                chunk = await run_in_threadpool(step)
                if chunk is None:
                    return
                yield chunk
                if chunk.startswith("event: error"):
                    return
        finally:
            listening.cancel()
            context.cancel()  # the client went (or the service stops): the watch thread ends

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})
