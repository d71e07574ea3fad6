"""The front door: a Milvus-compatible gRPC server (``milvus.proto.milvus.MilvusService``).

pymilvus programs talk to it unchanged. Writes go through the ``Walvus`` API to the WAL,
reads to a ``Searcher``; ``gateway.server.serve`` starts it, ``gateway.server.run`` is the
``walvus gateway`` process.
"""
