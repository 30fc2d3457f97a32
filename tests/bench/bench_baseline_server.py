"""The empty-handler baseline: the same proto, process model and server options as `liandong serve`,
with handlers that answer at once with an empty Determination (--canned: one real answer, built once).

    python tests/bench/bench_baseline_server.py --listen 127.0.0.1:P [--max-workers 16] [--canned]

Serves grpc.health.v1 (SERVING once listening) so the benchmark waits for it the same way. Stops on
SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Iterator
from concurrent import futures
from types import FrameType

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from liandong.server.config import Config
from liandong.v1 import liandong_pb2 as pb
from liandong.v1 import liandong_pb2_grpc as pb_grpc


class EmptyServicer(pb_grpc.ResponseServiceServicer):
    def __init__(self, answer: pb.Determination) -> None:
        self.answer = answer

    def Determine(self, request: pb.DetermineRequest, context: grpc.ServicerContext) -> pb.Determination:
        return self.answer

    def DetermineStream(
        self, request_iterator: Iterator[pb.DetermineStreamRequest], context: grpc.ServicerContext
    ) -> Iterator[pb.DetermineStreamResponse]:
        for batch in request_iterator:
            yield pb.DetermineStreamResponse(determinations=[self.answer] * len(batch.requests))


def canned_answer() -> pb.Determination:
    """One real answer, built once: a 较大火灾 with most situations reported (about 12.5 kB)."""
    from bench_common import RULES
    from liandong.engine.result import Incident
    from liandong.engine.runtime import DurableRuntime
    from liandong.rulebook import RuleBook
    from liandong.server.answers import AnswerCodec

    facts = {
        "deaths": 3,
        "serious_injuries": 12,
        "hazardous_materials": True,
        "casualties_need_treatment": True,
        "evacuation_or_traffic_control": True,
        "power_involved": True,
        "communications_needed": True,
    }
    book = RuleBook.load(RULES, DurableRuntime())
    det = book.determine(Incident(type="fire", facts=facts, id="canned"))
    return AnswerCodec(book.active("fire-linkage")).message(det, "canned", False)


def server_options() -> list[tuple[str, int]]:
    """The options `liandong serve` gives its server (message size limits, no port sharing)."""
    defaults = Config()
    return [
        ("grpc.max_receive_message_length", defaults.max_message_bytes),
        ("grpc.max_send_message_length", defaults.max_message_bytes),
        ("grpc.so_reuseport", 0),
    ]


def main() -> int:
    defaults = Config()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", required=True)
    parser.add_argument("--max-workers", type=int, default=defaults.max_workers)
    parser.add_argument(
        "--canned", action="store_true", help="answer with one real Determination instead of an empty one"
    )
    args = parser.parse_args()
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=args.max_workers, thread_name_prefix="rpc"), options=server_options()
    )
    pb_grpc.add_ResponseServiceServicer_to_server(
        EmptyServicer(canned_answer() if args.canned else pb.Determination()), server
    )
    checker = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(checker, server)
    server.add_insecure_port(args.listen)
    server.start()
    checker.set("", health_pb2.HealthCheckResponse.SERVING)
    done = threading.Event()

    def on_term(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    while not done.wait(0.5):
        pass
    server.stop(2).wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
