"""The HTTP/JSON door: ResponseService's unary RPCs under /v1, in protobuf's JSON mapping.

Routes follow google.api.http conventions (the proto is not annotated; this table is the mapping):

    POST /v1/determine                      Determine      body: DetermineRequest
    GET  /v1/rulesets                       ListRuleSets
    GET  /v1/rulesets/{ruleset}[?version=]  GetRuleSet

A refused call answers with the HTTP status for its gRPC code (calls.HTTP_STATUS) and the
google.rpc.Status as JSON, details included, exactly what a gRPC caller finds in the trailers.
"""

from __future__ import annotations

from collections.abc import Callable

from google.protobuf import json_format
from google.protobuf.message import Message
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from liandong.server.web.calls import Aborted, Calls
from liandong.v1 import liandong_pb2 as pb

JSON = "application/json; charset=utf-8"


def _json(message: Message) -> Response:
    return Response(json_format.MessageToJson(message, ensure_ascii=False), media_type=JSON)


def _refused(exc: Aborted) -> Response:
    return Response(exc.json(), status_code=exc.http_status(), media_type=JSON)


async def _answer(work: Callable[[], Message]) -> Response:
    # The handlers block (the engine evaluates one incident at a time): off the event loop.
    try:
        return _json(await run_in_threadpool(work))
    except Aborted as exc:
        return _refused(exc)


def routes(calls: Calls, max_body_bytes: int) -> list[Route]:
    async def determine(request: Request) -> Response:
        body = await request.body()
        if len(body) > max_body_bytes:
            return _refused(
                Calls.bad_request(
                    "request", f"{len(body)} bytes, over the limit of {max_body_bytes} (--max-message-bytes)"
                )
            )
        message = pb.DetermineRequest()
        try:
            json_format.Parse(body or b"{}", message)
        except (json_format.ParseError, UnicodeDecodeError) as exc:
            return _refused(Calls.bad_request("request", f"cannot be decoded: {exc}"))
        return await _answer(lambda: calls.determine(message))

    async def list_rulesets(request: Request) -> Response:
        return await _answer(calls.list_rulesets)

    async def get_ruleset(request: Request) -> Response:
        ruleset = request.path_params["ruleset"]
        version = request.query_params.get("version", "")
        return await _answer(lambda: calls.get_ruleset(ruleset, version))

    return [
        Route("/v1/determine", determine, methods=["POST"]),
        Route("/v1/rulesets", list_rulesets, methods=["GET"]),
        Route("/v1/rulesets/{ruleset}", get_ruleset, methods=["GET"]),
    ]
