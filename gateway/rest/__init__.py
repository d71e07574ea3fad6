"""Milvus's RESTful API v2 (``/v2/vectordb/...``) over the gRPC servicer, in-process.

Each handler turns a JSON body into the protobuf request a pymilvus client would send (built with
pymilvus's own ``Prepare`` where it has one), calls the ``MilvusServicer`` method in this process
and shapes the answer as Milvus's REST server does: ``{"code": 0, "data": ...}``, or
``{"code": N, "message": ...}``. Validation, aliases, databases and consistency are the gRPC
path's, not a second copy.
"""
