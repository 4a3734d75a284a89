"""Server reflection under grpc.reflection.v1 and grpc.reflection.v1alpha, with the proto comments.

The generated `_pb2` modules carry descriptors without source info, so reflection answered from
them gives `grpcurl describe` no comments. `make protos` (and the image build) therefore also
writes `gen/trader/descriptors.binpb` (`protoc --include_source_info --include_imports`): every
trader proto and its imports, comments included. This servicer answers from those
FileDescriptorProtos. Health and reflection's own files come from the installed packages (they
ship without comments); without the descriptor set (generated code from before it existed) the
trader files do too, and a warning says how to get the comments back (`make protos`).

grpcio-reflection serves v1alpha only. v1 is the same protocol field for field under another
package name (grpc/reflection/v1/reflection.proto), so one servicer answers both, and the v1
file is derived from the v1alpha one for clients that describe the reflection service itself.
Protocol: https://github.com/grpc/grpc/blob/master/doc/server-reflection.md
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from importlib.resources import files

import grpc
from google.protobuf import descriptor_pool
from google.protobuf.descriptor import FileDescriptor
from google.protobuf.descriptor_pb2 import FileDescriptorProto, FileDescriptorSet
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from services.common.logs import event

log = logging.getLogger("trader.reflection")

DESCRIPTOR_SET = "descriptors.binpb"  # in the generated `trader` package (gen/trader/)
V1ALPHA_SERVICE = "grpc.reflection.v1alpha.ServerReflection"
V1_SERVICE = "grpc.reflection.v1.ServerReflection"
SERVICE_NAMES = (V1_SERVICE, V1ALPHA_SERVICE)
_V1_FILE = "grpc/reflection/v1/reflection.proto"


def load_descriptor_set() -> list[FileDescriptorProto]:
    """The trader protos with source info, dependencies first; [] when the file is missing."""
    try:
        data = files("trader").joinpath(DESCRIPTOR_SET).read_bytes()
    except (ModuleNotFoundError, FileNotFoundError):
        event(log, "reflection without proto comments", logging.WARNING,
              reason=f"no {DESCRIPTOR_SET} beside the generated code; run `make protos`")
        return []
    return list(FileDescriptorSet.FromString(data).file)


def _compiled_files(descriptor: FileDescriptor, into: dict[str, FileDescriptorProto]) -> None:
    """`descriptor` and its imports as compiled into this process, dependencies first."""
    for dependency in descriptor.dependencies:
        _compiled_files(dependency, into)
    if descriptor.name not in into:
        proto = FileDescriptorProto()
        descriptor.CopyToProto(proto)
        into[descriptor.name] = proto


def reflection_v1_file() -> FileDescriptorProto:
    """grpc/reflection/v1/reflection.proto, made from the installed v1alpha file (identical but
    for the package; the file has no nested types)."""
    old, new = ".grpc.reflection.v1alpha.", ".grpc.reflection.v1."
    proto = FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(proto)
    proto.name, proto.package = _V1_FILE, "grpc.reflection.v1"
    proto.ClearField("options")
    for message in proto.message_type:
        for field in message.field:
            if field.HasField("type_name"):
                field.type_name = field.type_name.replace(old, new)
    for service in proto.service:
        for method in service.method:
            method.input_type = method.input_type.replace(old, new)
            method.output_type = method.output_type.replace(old, new)
    return proto


def reflected_files(service_names: Iterable[str]) -> list[FileDescriptorProto]:
    """What reflection serves for these services: the descriptor set's files, then the compiled
    files of every service it lacks (health, reflection v1alpha), then the derived v1 file."""
    files = {proto.name: proto for proto in load_descriptor_set()}
    described = {f"{proto.package}.{service.name}" for proto in files.values() for service in proto.service}
    default = descriptor_pool.Default()
    for name in set(service_names) - described - {V1_SERVICE}:
        try:
            _compiled_files(default.FindFileContainingSymbol(name), files)
        except KeyError:  # a service without generated code (raw handlers): listed, not described
            continue
    files[_V1_FILE] = reflection_v1_file()
    return list(files.values())


def _error(request, code: grpc.StatusCode, message: str) -> reflection_pb2.ServerReflectionResponse:
    return reflection_pb2.ServerReflectionResponse(
        original_request=request,
        error_response=reflection_pb2.ErrorResponse(error_code=code.value[0], error_message=message))


class ReflectionServicer(reflection_pb2_grpc.ServerReflectionServicer):
    """Answers reflection requests from `files` (FileDescriptorProtos, dependencies first).

    A file request is answered with the file, then its transitive imports (each file once).
    Unknown names get an error_response NOT_FOUND naming them; the stream goes on.
    """

    def __init__(self, service_names: Iterable[str], files: Iterable[FileDescriptorProto]):
        self._service_names = tuple(sorted(set(service_names)))
        self._pool = descriptor_pool.DescriptorPool()
        self._serialized: dict[str, bytes] = {}
        self._imports: dict[str, list[str]] = {}
        for proto in files:
            self._pool.Add(proto)
            self._serialized[proto.name] = proto.SerializeToString()
            self._imports[proto.name] = list(proto.dependency)

    def ServerReflectionInfo(self, request_iterator, context) -> Iterator[reflection_pb2.ServerReflectionResponse]:
        for request in request_iterator:
            yield self.answer(request)

    def answer(self, request: reflection_pb2.ServerReflectionRequest) -> reflection_pb2.ServerReflectionResponse:
        kind = request.WhichOneof("message_request")
        try:
            if kind == "file_by_filename":
                return self._files(request, self._pool.FindFileByName(request.file_by_filename).name)
            if kind == "file_containing_symbol":
                return self._files(request, self._file_containing_symbol(request.file_containing_symbol))
            if kind == "file_containing_extension":
                wanted = request.file_containing_extension
                message = self._pool.FindMessageTypeByName(wanted.containing_type)
                extension = self._pool.FindExtensionByNumber(message, wanted.extension_number)
                return self._files(request, extension.file.name)
            if kind == "all_extension_numbers_of_type":
                message = self._pool.FindMessageTypeByName(request.all_extension_numbers_of_type)
                numbers = sorted(extension.number for extension in self._pool.FindAllExtensions(message))
                return reflection_pb2.ServerReflectionResponse(
                    original_request=request,
                    all_extension_numbers_response=reflection_pb2.ExtensionNumberResponse(
                        base_type_name=message.full_name, extension_number=numbers))
            if kind == "list_services":
                return reflection_pb2.ServerReflectionResponse(
                    original_request=request,
                    list_services_response=reflection_pb2.ListServiceResponse(
                        service=[reflection_pb2.ServiceResponse(name=name) for name in self._service_names]))
        except KeyError:
            wanted = getattr(request, kind)
            if kind == "file_containing_extension":
                wanted = f"{wanted.containing_type} extension {wanted.extension_number}"
            return _error(request, grpc.StatusCode.NOT_FOUND, f"{kind}: not found: {wanted}")
        return _error(request, grpc.StatusCode.INVALID_ARGUMENT, "message_request: none of its fields is set")

    def _file_containing_symbol(self, symbol: str) -> str:
        try:
            return self._pool.FindFileContainingSymbol(symbol).name
        except KeyError:
            # <package>.<service>.<method> is a symbol too (the protocol says so; the pool does
            # not index methods)
            return self._pool.FindMethodByName(symbol).containing_service.file.name

    def _files(self, request, name: str) -> reflection_pb2.ServerReflectionResponse:
        ordered: list[str] = []
        pending = [name]
        while pending:
            current = pending.pop(0)
            if current not in ordered:
                ordered.append(current)
                pending.extend(self._imports[current])
        return reflection_pb2.ServerReflectionResponse(
            original_request=request,
            file_descriptor_response=reflection_pb2.FileDescriptorResponse(
                file_descriptor_proto=[self._serialized[n] for n in ordered]))


def enable_reflection(server: grpc.Server, service_names: Iterable[str]) -> None:
    """Serve reflection for `service_names` (and for itself) under both v1 and v1alpha."""
    names = (*service_names, *SERVICE_NAMES)
    servicer = ReflectionServicer(names, reflected_files(names))
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    # v1 has the same messages as v1alpha, field for field: the same handler serves it.
    handler = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(V1_SERVICE, {"ServerReflectionInfo": handler}),))
