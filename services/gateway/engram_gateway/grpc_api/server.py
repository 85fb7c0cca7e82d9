"""The gateway's gRPC server: ``engram.v1.MemoryService`` (methods.py, streams.py),
the standard health service (``grpc.health.v1``: SERVING while the gateway's NATS
connection and registry watch are up) and server reflection, on grpcio's asyncio
server in the gateway's event loop, next to the HTTP API."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection
from litestar.datastructures import State

from engram_contract.settings import GatewaySettings
from engram_gateway.grpc_api.calls import Api, client_stream, server_stream, unary
from engram_gateway.grpc_api.methods import UNARY
from engram_gateway.grpc_api.streams import CLIENT_STREAMS, SERVER_STREAMS
from engram_proto import SERVICE
from engram_proto.v1 import service_pb2

log = logging.getLogger(__name__)
HEALTH_SERVICE = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
#: seconds between health checks of the gateway's NATS side
HEALTH_EVERY = 1.0
#: seconds calls under way get to finish when the gateway stops
GRACE = 5.0


def _serialize(data: bytes) -> bytes:
    return data


def handlers(api: Api) -> grpc.GenericRpcHandler:
    """Every method of the service (a method of the .proto without one is a bug:
    the gateway refuses to start)."""
    methods = service_pb2.DESCRIPTOR.services_by_name["MemoryService"].methods_by_name
    missing = set(methods) - set(UNARY) - set(SERVER_STREAMS) - set(CLIENT_STREAMS)
    if missing:
        raise RuntimeError(f"{SERVICE}: no handler for {sorted(missing)}")
    table: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
    for name, (spec, fn) in UNARY.items():
        table[name] = grpc.unary_unary_rpc_method_handler(
            unary(api, name, spec, fn), response_serializer=_serialize
        )
    for name, (spec, fn) in SERVER_STREAMS.items():
        table[name] = grpc.unary_stream_rpc_method_handler(
            server_stream(api, name, spec, fn), response_serializer=_serialize
        )
    for name, (spec, fn) in CLIENT_STREAMS.items():
        table[name] = grpc.stream_unary_rpc_method_handler(
            client_stream(api, name, spec, fn), response_serializer=_serialize
        )
    return grpc.method_handlers_generic_handler(SERVICE, table)


def address(host: str, port: int) -> str:
    """``host:port`` (an IPv6 address in brackets)."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"


class GrpcServer:
    """The running server: :meth:`start` binds ``ENGRAM_HTTP_HOST:ENGRAM_GRPC_PORT``,
    :meth:`stop` lets calls under way finish (up to :data:`GRACE` seconds)."""

    def __init__(self, api: Api, host: str, port: int) -> None:
        self.api = api
        self.host = host
        self.port = port
        self.server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", api.settings.max_body_bytes),
                ("grpc.max_send_message_length", -1),
                # several gateway processes share the port (as uvicorn's workers share
                # the HTTP one); one alone fails to start when the port is taken
                ("grpc.so_reuseport", 1 if api.settings.http_workers > 1 else 0),
            ]
        )
        self.server.add_generic_rpc_handlers((handlers(api),))
        self.health = HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            (SERVICE, HEALTH_SERVICE, reflection.SERVICE_NAME), self.server
        )
        self._watch: asyncio.Task[None] | None = None

    async def start(self) -> int:
        """Serve; the port bound (the one asked, or the one picked for 0)."""
        where = address(self.host, self.port)
        try:
            bound = self.server.add_insecure_port(where)
        except RuntimeError as exc:
            raise RuntimeError(f"gRPC: cannot listen on {where}: {exc}") from None
        await self.server.start()
        self.port = bound
        await self._set_health()
        self._watch = asyncio.create_task(self._watch_health(), name="grpc-health")
        log.info("gateway: gRPC (%s, health, reflection) on %s", SERVICE, address(self.host, bound))
        return bound

    async def _set_health(self) -> None:
        serving = self.api.bridge.healthy is None
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for service in ("", SERVICE):
            await self.health.set(service, status)

    async def _watch_health(self) -> None:
        while True:
            await asyncio.sleep(HEALTH_EVERY)
            with contextlib.suppress(Exception):
                await self._set_health()

    async def stop(self, grace: float = GRACE) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)


async def start_grpc_api(settings: GatewaySettings, state: State) -> GrpcServer:
    """Serve gRPC on ``ENGRAM_HTTP_HOST:ENGRAM_GRPC_PORT`` with the HTTP app's state
    (its bridge, keys, space resolver and metrics); :attr:`GrpcServer.port` is the
    port bound."""
    api = Api(settings, state.bridge, state.auth, state.spaces, state.metrics)
    server = GrpcServer(api, settings.http_host, settings.grpc_port)
    await server.start()
    state.grpc = server
    return server
