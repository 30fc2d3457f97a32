"""The empty-handler baseline on grpc.aio: the same proto and server options as
bench_baseline_server.py, handlers run inline on the event loop (no handler thread pool), answering
at once with an empty Determination (--canned: one real answer, built once).

    python tests/bench/bench_baseline_aio_server.py --listen 127.0.0.1:P [--canned]

Issue 19 compares Liandong with "the faster of the two empty servers" (this one and the thread
pool one), each measured in the same run. Serves grpc.health.v1 (SERVING once listening). Stops on
SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import AsyncIterator

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from bench_baseline_server import canned_answer, server_options
from liandong.v1 import liandong_pb2 as pb
from liandong.v1 import liandong_pb2_grpc as pb_grpc


class EmptyAioServicer(pb_grpc.ResponseServiceServicer):
    def __init__(self, answer: pb.Determination) -> None:
        self.answer = answer

    async def Determine(self, request: pb.DetermineRequest, context: grpc.aio.ServicerContext) -> pb.Determination:  # type: ignore[override]
        return self.answer

    async def DetermineStream(  # type: ignore[override]
        self, request_iterator: AsyncIterator[pb.DetermineStreamRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.DetermineStreamResponse]:
        async for batch in request_iterator:
            yield pb.DetermineStreamResponse(determinations=[self.answer] * len(batch.requests))


async def serve(listen: str, answer: pb.Determination) -> None:
    server = grpc.aio.server(options=server_options())
    pb_grpc.add_ResponseServiceServicer_to_server(EmptyAioServicer(answer), server)
    checker = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(checker, server)
    server.add_insecure_port(listen)
    await server.start()
    await checker.set("", health_pb2.HealthCheckResponse.SERVING)
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, done.set)
    await done.wait()
    await server.stop(2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", required=True)
    parser.add_argument(
        "--canned", action="store_true", help="answer with one real Determination instead of an empty one"
    )
    args = parser.parse_args()
    asyncio.run(serve(args.listen, canned_answer() if args.canned else pb.Determination()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
