"""Snapshot RPCs of pymilvus 3.0: create, list, describe, drop, restore, and the restore-job states.

A snapshot pins the collection's Delta versions (``walvus.snapshots``); a restore creates a new
collection and writes the snapshot's live rows through the ordinary write path
(``walvus.restore``). Pinning snapshot data for a copy-out (``PinSnapshotData``), exporting and
restoring external snapshots are not offered: they answer UNIMPLEMENTED.
"""

from __future__ import annotations

import logging
import time

from pymilvus.grpc_gen import common_pb2, milvus_pb2

from gateway.databases import require_database
from gateway.errors import OK, NotSupported
from schemas.exceptions import InvalidArgument
from schemas.snapshots import RestoreJob
from walvus.restore import RestoreRunner
from walvus.snapshots import require_book, take_snapshot
from walvus.write_api import WriteApi

log = logging.getLogger(__name__)
DEFAULT_DB = "default"


def _check_db(walvus: WriteApi, name: str) -> None:
    """Snapshots are of collections of the default database: another database is refused (code 800
    when it does not exist)."""
    if name in ("", DEFAULT_DB):
        return
    require_database(walvus, name)
    raise NotSupported(f"snapshots are supported in the {DEFAULT_DB!r} database only, not in {name!r}")


def _required(value: str, what: str) -> str:
    if not value:
        raise InvalidArgument(f"{what} must be a non-empty string")
    return value


class SnapshotRpcs:
    def __init__(self, walvus: WriteApi) -> None:
        self.w = walvus
        self._runner: RestoreRunner | None = None

    @property
    def runner(self) -> RestoreRunner:
        if self._runner is None:
            self._runner = RestoreRunner(self.w, require_book(self.w))
        return self._runner

    def create_snapshot(self, req: milvus_pb2.CreateSnapshotRequest) -> common_pb2.Status:
        _check_db(self.w, req.db_name)
        rec = take_snapshot(
            self.w,
            _required(req.collection_name, "collection_name"),
            _required(req.name, "snapshot_name"),
            description=req.description,
            compaction_protection_seconds=req.compaction_protection_seconds,
        )
        log.info("snapshot created collection=%s snapshot=%s", rec.collection, rec.name)
        return OK

    def drop_snapshot(self, req: milvus_pb2.DropSnapshotRequest) -> common_pb2.Status:
        _check_db(self.w, req.db_name)
        book = require_book(self.w)
        rec = book.require(
            _required(req.collection_name, "collection_name"), _required(req.name, "snapshot_name")
        )
        running = book.restoring(rec, self.runner.stall_ms)
        if running:
            raise InvalidArgument(
                f"snapshot {rec.name} of collection {rec.collection} is being restored (job {running[0].job_id}): "
                "drop it once the restore finished"
            )
        book.remove_snapshot(rec)
        log.info("snapshot dropped collection=%s snapshot=%s", rec.collection, rec.name)
        return OK

    def list_snapshots(self, req: milvus_pb2.ListSnapshotsRequest) -> milvus_pb2.ListSnapshotsResponse:
        _check_db(self.w, req.db_name)
        recs = require_book(self.w).snapshots(req.collection_name or None)
        return milvus_pb2.ListSnapshotsResponse(status=OK, snapshots=[r.name for r in recs])

    def describe_snapshot(
        self, req: milvus_pb2.DescribeSnapshotRequest
    ) -> milvus_pb2.DescribeSnapshotResponse:
        _check_db(self.w, req.db_name)
        rec = require_book(self.w).require(
            _required(req.collection_name, "collection_name"), _required(req.name, "snapshot_name")
        )
        return milvus_pb2.DescribeSnapshotResponse(
            status=OK,
            name=rec.name,
            description=rec.description,
            collection_name=rec.collection,
            partition_names=rec.partition_names,
            create_ts=rec.created_ms,
            s3_location=f"{self.w.store.root}/{rec.collection_id}@rows_v{rec.rows_version},deletes_v{rec.deletes_version}",
        )

    def restore_snapshot(self, req: milvus_pb2.RestoreSnapshotRequest) -> milvus_pb2.RestoreSnapshotResponse:
        _check_db(self.w, req.db_name)
        _check_db(self.w, req.target_db_name)
        # rewrite_data: walvus always writes the rows anew (the WAL, then new segments), so either
        # value gives the same collection
        rec = require_book(self.w).require(
            _required(req.collection_name, "source_collection_name"), _required(req.name, "snapshot_name")
        )
        job = self.runner.start(rec, _required(req.target_collection_name, "target_collection_name"))
        return milvus_pb2.RestoreSnapshotResponse(status=OK, job_id=job.job_id)

    def restore_state(
        self, req: milvus_pb2.GetRestoreSnapshotStateRequest
    ) -> milvus_pb2.GetRestoreSnapshotStateResponse:
        job = self.runner.state(req.job_id)
        return milvus_pb2.GetRestoreSnapshotStateResponse(status=OK, info=_job_info(job))

    def list_restore_jobs(
        self, req: milvus_pb2.ListRestoreSnapshotJobsRequest
    ) -> milvus_pb2.ListRestoreSnapshotJobsResponse:
        _check_db(self.w, req.db_name)
        jobs = [self.runner.checked(j) for j in require_book(self.w).jobs(req.collection_name or None)]
        return milvus_pb2.ListRestoreSnapshotJobsResponse(status=OK, jobs=[_job_info(j) for j in jobs])


def _job_info(job: RestoreJob) -> milvus_pb2.RestoreSnapshotInfo:
    return milvus_pb2.RestoreSnapshotInfo(
        job_id=job.job_id,
        snapshot_name=job.snapshot,
        db_name=DEFAULT_DB,
        collection_name=job.target,
        state=milvus_pb2.RestoreSnapshotState.Value(job.state),
        progress=job.progress,
        reason=job.reason,
        start_time=job.start_ms,
        time_cost=job.time_cost_ms(int(time.time() * 1000)),
    )
