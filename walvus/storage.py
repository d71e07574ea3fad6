"""Segment storage behind a short interface: Delta Lake tables per collection.

Each collection has two tables under ``<root>/<collection_id>/``: ``rows`` (sealed
segments) and ``deletes`` (the delete log of tombstones). Every commit carries a Delta
application transaction ``walvus-<collection_id>-<shard>`` whose version is the last WAL
offset included, and custom metadata naming the segment. Index files live beside them
under ``indexes/``. Any URI that delta-rs supports works; the default is local disk.

Readers get a ``TableSnapshot``: one version of one table, read through a few declared methods.
This is the only module that imports ``deltalake``.
"""

from __future__ import annotations

import logging
import math
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError

from walvus.exceptions import CommitConflict, StorageError
from walvus.filesystems import is_local, object_store
from walvus.index_store import IndexStore

log = logging.getLogger(__name__)
ROWS = "rows"
DELETES = "deletes"


def app_id(collection_id: int, shard: int) -> str:
    return f"walvus-{collection_id}-{shard}"


def _local_files(table_uri: str) -> pafs.FileSystem | None:
    """A local table's files as pyarrow reads them itself; None (delta-rs's object store) elsewhere.

    Through delta-rs's storage handler each Parquet file comes back as a Python buffer, and a
    searcher that loaded 400,000 rows x 128 floats that way stayed about 200 MB larger."""
    if "://" in table_uri and not table_uri.startswith("file://"):
        return None
    return pafs.SubTreeFileSystem(table_uri.removeprefix("file://"), pafs.LocalFileSystem())


@dataclass(frozen=True)
class TableSnapshot:
    """One version of a collection's ``rows`` or ``deletes`` table: what a reader may ask of it.

    Every answer is of this version, however many commits land after it was opened; hand it back to
    ``SegmentStore.replace_segments`` to commit a rewrite checked against it."""

    collection_id: int
    kind: str
    version: int
    _table: DeltaTable = field(repr=False, compare=False)
    _store: SegmentStore = field(repr=False, compare=False)

    def dataset(self) -> ds.Dataset:
        """The version's rows as a pyarrow dataset (read lazily, filters pushed down)."""
        with self._reading("read"):
            return self._table.to_pyarrow_dataset(filesystem=_local_files(self._table.table_uri))

    def committed_offset(self, shard: int) -> int | None:
        """The last WAL offset of ``shard`` this version holds, or None when the shard never committed."""
        with self._reading("read the committed offsets of"):
            got = self._table.transaction_version(app_id(self.collection_id, shard))
        return None if got is None else int(got)

    def history(self, limit: int | None = None) -> list[dict[str, Any]]:
        """The commits up to this version (at most ``limit``), newest first: version, operation and
        custom metadata. Read from the latest version: delta-rs lists the log as it is now whatever
        version a table was opened at, and numbers the commits down from the version opened."""
        latest = self._store._delta(self.collection_id, self.kind)
        if latest is None:
            raise StorageError(f"the {self.kind} table of collection {self.collection_id} is gone")
        with self._reading("read the history of"):
            ahead = max(0, int(latest.version()) - self.version)
            return latest.history(None if limit is None else limit + ahead)[ahead:]

    def files(self) -> pa.Table:
        """The version's data files: ``path`` (relative to the table), ``size_bytes``, ``num_records``."""
        with self._reading("list the files of"):
            adds = pa.table(self._table.get_add_actions(flatten=True))
        return adds.select(["path", "size_bytes", "num_records"])

    def file_uris(self) -> list[str]:
        """The version's data files, as absolute URIs."""
        with self._reading("list the files of"):
            return list(self._table.file_uris())

    @contextmanager
    def _reading(self, what: str) -> Iterator[None]:
        try:
            yield
        except DeltaError as exc:
            raise StorageError(
                f"cannot {what} {self.kind} table of collection {self.collection_id} "
                f"at version {self.version}: {exc}"
            ) from exc


class SegmentStore:
    def __init__(self, root: str, storage_options: dict[str, str] | None = None) -> None:
        self.root = root.rstrip("/")
        self.options = storage_options or None
        self.indexes = IndexStore(self.root, storage_options)  # beside the tables, wherever they are

    def table_uri(self, collection_id: int, kind: str) -> str:
        return f"{self.root}/{collection_id}/{kind}"

    def open(self, collection_id: int, kind: str, version: int | None = None) -> TableSnapshot | None:
        """The table's latest version (or ``version``); None when the table was never written."""
        dt = self._delta(collection_id, kind, version)
        return None if dt is None else TableSnapshot(collection_id, kind, int(dt.version()), dt, self)

    def _delta(self, collection_id: int, kind: str, version: int | None = None) -> DeltaTable | None:
        try:
            return DeltaTable(
                self.table_uri(collection_id, kind), version=version, storage_options=self.options
            )
        except TableNotFoundError:
            return None
        except DeltaError as exc:
            raise StorageError(f"cannot open {kind} table of collection {collection_id}: {exc}") from exc

    def committed_offset(self, collection_id: int, kind: str, shard: int) -> int:
        """The last WAL offset committed for this shard, or -1."""
        snap = self.open(collection_id, kind)
        offset = None if snap is None else snap.committed_offset(shard)
        return -1 if offset is None else offset

    def append(
        self,
        collection_id: int,
        kind: str,
        table: pa.Table,
        *,
        shard: int,
        last_offset: int,
        metadata: dict[str, Any],
        partition_by: list[str] | None = None,
    ) -> int:
        """Append ``table`` and record ``last_offset`` for the shard, atomically. Returns the table version.

        Raises ``CommitConflict`` when a concurrent writer committed first (nothing was written)."""
        uri = self.table_uri(collection_id, kind)
        props = CommitProperties(
            custom_metadata={k: str(v) for k, v in metadata.items()},
            app_transactions=[Transaction(app_id=app_id(collection_id, shard), version=int(last_offset))],
        )
        try:
            write_deltalake(
                uri,
                table,
                mode="append",
                partition_by=partition_by,
                commit_properties=props,
                storage_options=self.options,
                schema_mode="merge",
            )
            dt = DeltaTable(uri, storage_options=self.options)
        except CommitFailedError as exc:  # a concurrent commit won: safe to retry (see SegmentWriter)
            raise CommitConflict(
                f"commit conflict on {kind} table of collection {collection_id} shard {shard}: {exc}"
            ) from exc
        except DeltaError as exc:
            raise StorageError(f"cannot commit to {kind} table of collection {collection_id}: {exc}") from exc
        return dt.version()

    def replace_segments(
        self,
        collection_id: int,
        kind: str,
        snapshot: TableSnapshot,
        table: pa.Table,
        segment_ids: list[int],
        *,
        metadata: dict[str, Any],
        partition_by: list[str] | None = None,
    ) -> int:
        """One Delta commit that removes every row of ``segment_ids`` and adds ``table`` (whose rows
        all belong to ``segment_ids``), checked against ``snapshot``: the version the caller read.
        Appends committed since do not conflict (they add other segments); a concurrent rewrite of
        the same files does, and raises ``CommitConflict`` with nothing written. Application
        transactions stay as they are. Returns the new table version."""
        if not segment_ids:
            raise ValueError("replace_segments needs the ids of the segments it replaces")
        if (snapshot.collection_id, snapshot.kind) != (collection_id, kind):
            raise ValueError(
                f"replace_segments of the {kind} table of collection {collection_id} was given a snapshot "
                f"of the {snapshot.kind} table of collection {snapshot.collection_id}"
            )
        predicate = "_segment IN (" + ", ".join(str(int(s)) for s in sorted(set(segment_ids))) + ")"
        props = CommitProperties(custom_metadata={k: str(v) for k, v in metadata.items()})
        try:
            # a table of its own at the snapshot's version: a write advances the table it is given,
            # and the snapshot stays the version it names
            read = DeltaTable(
                self.table_uri(collection_id, kind), version=snapshot.version, storage_options=self.options
            )
            write_deltalake(
                read,
                table,
                mode="overwrite",
                predicate=predicate,
                partition_by=partition_by,
                commit_properties=props,
            )
            dt = DeltaTable(self.table_uri(collection_id, kind), storage_options=self.options)
        except CommitFailedError as exc:
            raise CommitConflict(
                f"commit conflict rewriting {kind} segments of collection {collection_id}: {exc}"
            ) from exc
        except DeltaError as exc:
            raise StorageError(f"cannot rewrite {kind} table of collection {collection_id}: {exc}") from exc
        return dt.version()

    def vacuum(self, collection_id: int, kind: str, retention_seconds: float) -> list[str]:
        """Delete the files that commits removed more than ``retention_seconds`` ago (rounded up to
        whole hours, as Delta counts; 0 deletes them at once). Files no commit ever added, such as
        those of a writer killed before its commit, are left alone: a concurrent append's files
        look the same until it commits. Returns the deleted files."""
        dt = self._delta(collection_id, kind)
        if dt is None:
            return []
        hours = math.ceil(max(0.0, retention_seconds) / 3600)
        try:
            return list(dt.vacuum(retention_hours=hours, dry_run=False, enforce_retention_duration=False))
        except DeltaError as exc:
            raise StorageError(f"cannot vacuum {kind} table of collection {collection_id}: {exc}") from exc

    def read(
        self,
        collection_id: int,
        kind: str,
        filter: Any = None,
        columns: list[str] | None = None,
        version: int | None = None,
    ) -> pa.Table | None:
        snap = self.open(collection_id, kind, version)
        if snap is None:
            return None
        dataset = snap.dataset()
        try:
            return dataset.to_table(filter=filter, columns=columns)
        except (OSError, pa.ArrowInvalid) as exc:
            raise StorageError(f"cannot read {kind} table of collection {collection_id}: {exc}") from exc

    def delete_where(self, collection_id: int, kind: str, predicate: str, metadata: dict[str, Any]) -> int:
        """Delete the rows matching a Delta SQL ``predicate`` in a new table version (files leave
        the disk when the table is vacuumed). Returns how many rows went."""
        dt = self._delta(collection_id, kind)
        if dt is None:
            return 0
        try:
            got = dt.delete(
                predicate,
                commit_properties=CommitProperties(custom_metadata={k: str(v) for k, v in metadata.items()}),
            )
        except CommitFailedError as exc:
            raise CommitConflict(
                f"commit conflict deleting from {kind} table of collection {collection_id}: {exc}"
            ) from exc
        except DeltaError as exc:
            raise StorageError(
                f"cannot delete from {kind} table of collection {collection_id}: {exc}"
            ) from exc
        return int(got.get("num_deleted_rows", 0) or 0)

    def dataset(self, collection_id: int, kind: str) -> ds.Dataset | None:
        snap = self.open(collection_id, kind)
        return None if snap is None else snap.dataset()

    def collection_uri(self, collection_id: int) -> str:
        return f"{self.root}/{collection_id}"

    def collection_exists(self, collection_id: int) -> bool:
        """Whether anything of the collection is stored: its tables or its index files."""
        if self.indexes.exists(collection_id):
            return True
        uri = self.collection_uri(collection_id)
        if is_local(uri):
            return Path(uri.removeprefix("file://")).exists()
        fs, path = object_store(uri, self.options)
        try:
            return fs.get_file_info(path).type != pafs.FileType.NotFound
        except (OSError, pa.ArrowException) as exc:
            raise StorageError(f"cannot look for collection {collection_id} at {uri}: {exc}") from exc

    def remove_collection(self, collection_id: int) -> None:
        """Delete the collection's tables and index files, for good (no time travel afterwards).

        Object stores are reached through pyarrow's filesystems, with ``storage_options`` translated
        by ``walvus.filesystems``."""
        self.indexes.remove_collection(collection_id)
        uri = self.collection_uri(collection_id)
        try:
            if is_local(uri):
                shutil.rmtree(uri.removeprefix("file://"))
            else:
                fs, path = object_store(uri, self.options)
                fs.delete_dir(path)
        except FileNotFoundError:
            pass
        except (OSError, pa.ArrowException) as exc:
            raise StorageError(f"cannot remove the tables of collection {collection_id}: {exc}") from exc
