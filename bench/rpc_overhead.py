"""Benchmark: the CPU our RPC plumbing adds to a call, beside bare gRPC measured in the same run.

Two measurements, each configuration in a child process of its own:

1. The plumbing alone, without a network (steady even on a busy machine): a read and a write
   through the client's channel (services/common/client.py) over a channel that answers at once,
   and a call through the server's interceptors (services/common/server.py) to a handler that
   answers at once, inside a trace as in a cycle. Two ways (services/common/tracing.py): as the
   services run without an exporter (our layers carry the trace context), and with
   OpenTelemetry's gRPC instrumentation (as with an exporter; here unsampled). Microseconds of
   CPU per call.
2. Real calls on 127.0.0.1, server and client in one process (both ends count): bare gRPC
   (no interceptors, no tracing) against the services' stack, both ways, each call carrying an
   as-of time and a trace as in a backtest. Milliseconds of process CPU per call; noisy on a
   shared machine.

    .venv/bin/python bench/rpc_overhead.py [--calls 3000] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import timeit
from collections import namedtuple
from concurrent import futures
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVICE = "trader.display.v1.Display"
READ, WRITE = f"/{SERVICE}/GetThing", f"/{SERVICE}/PutThing"
AS_OF = datetime(2016, 3, 1, 20, 30, tzinfo=UTC)
TOKEN = "bench-token-0123456789abcdef"


def _per_call_us(call, number: int = 20000) -> float:
    return min(timeit.repeat(call, number=number, repeat=5)) / number * 1e6


def plumbing(instrumented: bool) -> dict[str, float]:
    """Microseconds per call of the client's and the server's plumbing, without a network."""
    import grpc
    from grpc._interceptor import service_pipeline
    from opentelemetry import trace

    sys.path.insert(0, str(ROOT))
    from services.common import clock
    from services.common.client import _intercepted
    from services.common.server import start_server
    from services.common.tracing import setup_tracing
    from tests.helpers import make_config

    class Answered:
        def __call__(self, request, timeout=None, metadata=None, credentials=None, wait_for_ready=None,
                     compression=None):
            return b"ok"

        def with_call(self, request, timeout=None, metadata=None, credentials=None, wait_for_ready=None,
                      compression=None):
            return b"ok", Done()

    class Done:
        def code(self):
            return grpc.StatusCode.OK

        def result(self):
            return b"ok"

    class Immediate(grpc.Channel):
        """A channel whose calls answer at once."""

        def unary_unary(self, method, request_serializer=None, response_deserializer=None, _registered_method=False):
            return Answered()

        unary_stream = stream_unary = stream_stream = unary_unary

        def subscribe(self, callback, try_to_connect=False):
            pass

        def unsubscribe(self, callback):
            pass

        def close(self):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    Metadatum = namedtuple("Metadatum", "key value")
    metadata = tuple(Metadatum(k, v) for k, v in (
        ("authorization", f"Bearer {TOKEN}"), ("x-trader-as-of", clock.format_as_of(AS_OF)),
        ("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"), ("user-agent", "grpc-python")))

    class Context:
        def invocation_metadata(self):
            return metadata

        def peer(self):
            return "ipv4:127.0.0.1:40000"

        def code(self):
            return None

        def is_active(self):
            return True

    class Details:
        method = READ
        invocation_metadata = metadata

    setup_tracing("bench", instrument=instrumented)
    results = {}
    channel = Immediate()
    if instrumented:
        from opentelemetry.instrumentation.grpc import client_interceptor
        from opentelemetry.instrumentation.grpc.grpcext import intercept_channel

        channel = intercept_channel(channel, client_interceptor())
    with clock.use_as_of(AS_OF), trace.get_tracer("bench").start_as_current_span("cycle"):
        ours = _intercepted(channel, TOKEN, 5.0)
        read, write, plain = ours.unary_unary(READ), ours.unary_unary(WRITE), channel.unary_unary(READ)
        for label, call in (("read", read), ("write", write), ("without our layer", plain)):
            results[f"client: {label}"] = _per_call_us(lambda call=call: call(b""))
    running = start_server(make_config("display", TOKEN), lambda server: None)
    interceptors = running.server._state.interceptor_pipeline.interceptors  # OpenTelemetry's first, if any
    running.stop(0)
    handler = grpc.unary_unary_rpc_method_handler(lambda request, context: b"ok")
    context, details = Context(), Details()
    layers = [("server", interceptors)] + ([("server: without our layer", interceptors[:1])] if instrumented else [])
    for name, chosen in layers:
        pipeline = service_pipeline(chosen)
        results[name] = _per_call_us(
            lambda pipeline=pipeline: pipeline.execute(lambda _: handler, details).unary_unary(b"", context))
    return results


def _measure(call, calls: int) -> tuple[float, float]:
    """(CPU ms, wall ms) per call of `call()`, after a warm-up."""
    for _ in range(200):
        call()
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(calls):
        call()
    return ((time.process_time() - cpu) * 1000 / calls, (time.perf_counter() - wall) * 1000 / calls)


def round_trips(kind: str, calls: int) -> dict[str, tuple[float, float]]:
    """`kind`: bare, stack (as the services run without an exporter) or instrumented."""
    import grpc

    sys.path.insert(0, str(ROOT))
    from tests.helpers import make_config, raw_methods

    methods = {"GetThing": lambda request, context: b"ok", "PutThing": lambda request, context: b"ok"}
    if kind == "bare":
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
        raw_methods(SERVICE, methods)(server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        read, write = channel.unary_unary(READ), channel.unary_unary(WRITE)
        result = {"read": _measure(lambda: read(b""), calls), "write": _measure(lambda: write(b""), calls)}
        server.stop(0)
        return result
    from opentelemetry import trace

    from services.common import clock
    from services.common.client import Clients
    from services.common.server import start_server
    from services.common.tracing import setup_tracing

    setup_tracing("bench", instrument=kind == "instrumented")
    config = make_config("display", TOKEN)
    running = start_server(config, raw_methods(SERVICE, methods))
    clients = Clients(config)
    channel = clients.channel("display")
    read, write = channel.unary_unary(READ), channel.unary_unary(WRITE)
    with clock.use_as_of(AS_OF), trace.get_tracer("bench").start_as_current_span("cycle"):
        result = {"read": _measure(lambda: read(b""), calls), "write": _measure(lambda: write(b""), calls)}
    clients.close()
    running.stop(0)
    return result


def run_child(*args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", *args], cwd=ROOT, capture_output=True, text=True,
                         check=True, env={**os.environ, "GRPC_VERBOSITY": "ERROR"})
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--child", nargs="+")
    args = parser.parse_args()
    if args.child:
        kind = args.child[0]
        if kind.startswith("plumbing"):
            print(json.dumps(plumbing(kind == "plumbing-instrumented")))
        else:
            print(json.dumps(round_trips(kind, args.calls)))
        return
    ours, instrumented = run_child("plumbing"), run_child("plumbing-instrumented")
    print("1. the plumbing alone, CPU microseconds per call (no network), inside a trace:")
    print(f"   {'':30s} {'ours':>8s} {'instrumented':>13s}")
    for name in ("client: read", "client: write", "client: without our layer", "server"):
        print(f"   {name:30s} {ours[name]:8.1f} {instrumented[name]:13.1f}")
    both = {way: layers["client: read"] + layers["server"] for way, layers in (("ours", ours),
                                                                               ("instrumented", instrumented))}
    print(f"   a read at both ends: {both['ours']:.1f} ours, {both['instrumented']:.1f} with the instrumentation "
          f"({both['instrumented'] / both['ours']:.1f}x)")
    best: dict[tuple[str, str], tuple[float, float]] = {}
    kinds = ("bare", "stack", "instrumented")
    for _ in range(args.runs):  # interleaved, the best of each: the machine is shared
        for kind in kinds:
            for call, (cpu, wall) in run_child(kind, "--calls", str(args.calls)).items():
                old = best.get((kind, call), (float("inf"), float("inf")))
                best[(kind, call)] = (min(old[0], cpu), min(old[1], wall))
    print(f"2. real calls: {'CPU ms/call':>16s} {'wall ms/call':>13s}   "
          f"(best of {args.runs} runs of {args.calls} calls)")
    for call in ("read", "write"):
        bare_cpu = best[("bare", call)][0]
        for kind in kinds:
            cpu, wall = best[(kind, call)]
            ratio = "" if kind == "bare" else f"   overhead {cpu - bare_cpu:.3f}, {cpu / bare_cpu:.2f}x bare CPU"
            print(f"   {kind + ' ' + call:18s} {cpu:10.3f} {wall:13.3f}{ratio}")

if __name__ == "__main__":
    main()
