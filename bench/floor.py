"""The floor under any Python Milvus-protocol server on this machine.

A gRPC server built like walvus's gateway (grpcio's thread-pool server, the same worker
count, several processes on one port with SO_REUSEPORT) whose Search does no work at all:
it answers a prepared response of the right shape (top-10 ids, scores and the ``id``
field for each query vector). What pymilvus and gRPC cost per call on this machine is
then all there is, which bounds the QPS any Python server can reach here.

    python -m bench.floor --port 19531    # one process; bench.peers.FloorPeer starts several
"""

from __future__ import annotations

import argparse
import threading
from concurrent import futures
from functools import lru_cache

import grpc
from pymilvus.grpc_gen import common_pb2, milvus_pb2, milvus_pb2_grpc, schema_pb2

from bench.peers import TOP_K
from walvus.processes import on_stop_signal
from walvus.settings import GatewaySettings

WORKERS = GatewaySettings.model_fields["grpc_workers"].default  # as the walvus gateway
OK = common_pb2.Status(code=0, error_code=common_pb2.ErrorCode.Success)


@lru_cache(maxsize=16)
def prepared(nq: int) -> milvus_pb2.SearchResults:
    ids = list(range(TOP_K)) * nq
    data = schema_pb2.SearchResultData(
        num_queries=nq,
        top_k=TOP_K,
        scores=[1.0 - i / 100 for i in range(TOP_K)] * nq,
        topks=[TOP_K] * nq,
        output_fields=["id"],
        primary_field_name="id",
    )
    data.ids.int_id.data.extend(ids)
    field = data.fields_data.add(type=schema_pb2.DataType.Int64, field_name="id", field_id=100)
    field.scalars.long_data.data.extend(ids)
    return milvus_pb2.SearchResults(status=OK, results=data, collection_name="floor")


class FloorServicer(milvus_pb2_grpc.MilvusServiceServicer):
    def Connect(self, request, context):  # noqa: N802 - gRPC method names
        return milvus_pb2.ConnectResponse(status=OK, identifier=1)

    def GetVersion(self, request, context):  # noqa: N802
        return milvus_pb2.GetVersionResponse(status=OK, version="floor")

    def Search(self, request, context):  # noqa: N802
        return prepared(max(request.nq, 1))


def serve(port: int) -> grpc.Server:
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=WORKERS),
        options=[("grpc.so_reuseport", 1), ("grpc.max_receive_message_length", 64 * 1024 * 1024)],
    )
    milvus_pb2_grpc.add_MilvusServiceServicer_to_server(FloorServicer(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    return server


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    server = serve(args.port)
    stop = threading.Event()
    on_stop_signal(stop.set)
    stop.wait()
    server.stop(grace=1).wait()


if __name__ == "__main__":
    main()
