"""Engram's protobuf contract as Python: the messages and the gRPC
``MemoryService`` stubs generated from ``proto/engram/v1/*.proto`` (``make
proto``; a test fails when they are out of date). Import them from
:mod:`engram_proto.v1`, e.g. ``from engram_proto.v1 import service_pb2``.

The generated modules register their files in protobuf's default descriptor
pool under their .proto names (``engram/v1/service.proto``), as any other
client generated from those files would, so server reflection serves them as
they are written."""

SERVICE = "engram.v1.MemoryService"
