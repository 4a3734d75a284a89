"""`python -m gateway.call`: call any RPC by name with a JSON body, like grpcurl.

    python -m gateway.call [--token T] [--as-of ISO] [--cacert CA --cert CERT --key KEY] ADDRESS [SERVICE/METHOD] [JSON]

Uses server reflection (no .proto files needed). Without a method it lists the services.
The token defaults to $TRADER_API_TOKEN; TLS to the TRADER_TLS_* variables (--cacert, --cert
and --key, as grpcurl's, override TRADER_TLS_CA, TRADER_TLS_CLIENT_CERT and _KEY).
"""

from __future__ import annotations

import argparse
import os
import sys

import grpc
from google.protobuf import descriptor_pool, json_format, message_factory
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from services.common.client import raw_channel
from services.common.config import TLS_CA, TLS_CLIENT_CERT, TLS_CLIENT_KEY, ClientTls, ConfigError, load_client_tls


def call(address: str, method: str, body: str, metadata: list[tuple[str, str]], timeout: float,
         tls: ClientTls | None = None) -> str:
    with raw_channel(address, tls) as channel:
        pool = descriptor_pool.DescriptorPool(ProtoReflectionDescriptorDatabase(channel))
        service_name, _, method_name = method.rpartition("/")
        descriptor = pool.FindServiceByName(service_name).FindMethodByName(method_name)
        request_class = message_factory.GetMessageClass(descriptor.input_type)
        response_class = message_factory.GetMessageClass(descriptor.output_type)
        request = json_format.Parse(body or "{}", request_class())
        rpc = channel.unary_unary(f"/{service_name}/{method_name}",
                                  request_serializer=request_class.SerializeToString,
                                  response_deserializer=response_class.FromString)
        reply = rpc(request, metadata=metadata, timeout=timeout)
        return json_format.MessageToJson(reply, preserving_proto_field_name=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway.call", description=__doc__.splitlines()[0])
    parser.add_argument("address")
    parser.add_argument("method", nargs="?", help="e.g. trader.gateway.v1.Gateway/GetSystemStatus")
    parser.add_argument("body", nargs="?", default="{}", help="request as JSON")
    parser.add_argument("--token", default=os.environ.get("TRADER_API_TOKEN"))
    parser.add_argument("--as-of", help="simulated now, sent as x-trader-as-of")
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--cacert", help=f"CA bundle that signed the server's certificate (default ${TLS_CA})")
    parser.add_argument("--cert", help=f"client certificate for mutual TLS (default ${TLS_CLIENT_CERT})")
    parser.add_argument("--key", help=f"its private key (default ${TLS_CLIENT_KEY})")
    args = parser.parse_args(argv)
    flags = {TLS_CA: args.cacert, TLS_CLIENT_CERT: args.cert, TLS_CLIENT_KEY: args.key}
    try:
        tls = load_client_tls({**os.environ, **{name: value for name, value in flags.items() if value}})
    except ConfigError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 2
    try:
        if args.method is None:
            with raw_channel(args.address, tls) as channel:
                print("\n".join(sorted(ProtoReflectionDescriptorDatabase(channel).get_services())))
            return 0
        metadata = [("authorization", f"Bearer {args.token}")] if args.token else []
        if args.as_of:
            metadata.append(("x-trader-as-of", args.as_of))
        print(call(args.address, args.method, args.body, metadata, args.timeout, tls))
        return 0
    except grpc.RpcError as exc:
        print(f"ERROR: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    except (KeyError, json_format.ParseError) as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
