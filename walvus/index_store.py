"""The index store: where segments' index files live, what they are named, and their I/O.

The index workers write it, the searchers and DescribeIndex read it, the garbage collector and
``walvus inspect`` list it; none of them knows where the files are. They live beside the Delta
tables, in ``<root>/<collection_id>/indexes/``: on local disk when the tables are, else on the
same object store (s3://, gs://, az://, reached with the tables' storage options), so a searcher
on another machine needs only Kafka and the object store.

Files are named ``<segment>_<field>_<index_id>`` then ``.faiss`` (the index), ``.failed.json`` (a
failed build) or, on local disk, a writer's ``.tmp<pid>`` (a file being written, renamed into
place whole). An object store's puts are atomic per object, so there nothing is renamed.

A failure file holds the reason, the attempts so far and the next retry (unix seconds). It is the
durable record DescribeIndex reads (every gateway process, also after restarts); the indexer
removes it once the index file is written. A dropped or recreated index has a new index id, so
old failure files no longer match it.

FAISS reads and memory-maps local files: a remote index is downloaded to a temporary file for the
time of a read (``local_index``) and that file is removed afterwards; a memory map of it stays
valid until the index is released (the disk space too).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import pyarrow as pa
import pyarrow.fs as pafs

from walvus.exceptions import StorageError
from walvus.filesystems import is_local, object_store

INDEX = "index"
FAILURE = "failure"
PARTIAL = "partial"  # a local writer's temporary file

# <segment>_<field>_<index id> then .faiss, .failed.json, or a writer's temporary suffix
_INDEX_NAME = re.compile(r"^(\d+)_(.+)_(\d+)\.(faiss|tmp\d+|failed\.json(?:\.tmp\d+)?)$")
_COPY_CHUNK = 8 << 20


class IndexFile(NamedTuple):
    """One file of a collection's index folder."""

    name: str
    segment_id: int
    field: str
    index_id: int
    kind: str  # INDEX, FAILURE or PARTIAL
    size: int


def parse_index_file(name: str) -> tuple[int, str, int] | None:
    """(segment id, field, index id) of a file in an index folder, or None for another file."""
    m = _INDEX_NAME.match(name)
    return None if m is None else (int(m.group(1)), m.group(2), int(m.group(3)))


def _kind(name: str) -> str:
    if name.endswith(".faiss"):
        return INDEX
    return FAILURE if name.endswith(".failed.json") else PARTIAL


def index_name(segment_id: int, field: str, index_id: int) -> str:
    return f"{segment_id}_{field}_{index_id}.faiss"


def failure_name(segment_id: int, field: str, index_id: int) -> str:
    return f"{segment_id}_{field}_{index_id}.failed.json"


class IndexStore:
    """Index and failure files of every collection under ``root`` (a path or an object-store URI)."""

    def __init__(self, root: str, storage_options: dict[str, str] | None = None) -> None:
        self.root = root.rstrip("/")
        self._fs: pafs.FileSystem | None = None
        if is_local(self.root):
            self._base = str(Path(self.root.removeprefix("file://")))
        else:
            self._fs, self._base = object_store(self.root, storage_options)

    @property
    def remote(self) -> bool:
        return self._fs is not None

    def location(self, collection_id: int) -> str:
        """The collection's index folder, as a user would look for it."""
        if self._fs is None:
            return self._dir(collection_id)
        return f"{self.root}/{collection_id}/indexes"

    def index_location(self, collection_id: int, segment_id: int, field: str, index_id: int) -> str:
        return f"{self.location(collection_id)}/{index_name(segment_id, field, index_id)}"

    # listing --------------------------------------------------------------------------------
    def files(self, collection_id: int) -> list[IndexFile]:
        """The collection's index, failure and partial files (other files are not listed)."""
        out = []
        for name, size in self._list(collection_id):
            parsed = parse_index_file(name)
            if parsed is not None:
                out.append(IndexFile(name, *parsed, _kind(name), size))
        return out

    def built(self, collection_id: int) -> set[tuple[int, str, int]]:
        """(segment id, field, index id) of every index file written whole."""
        return self.built_and_failed(collection_id)[0]

    def built_and_failed(
        self, collection_id: int
    ) -> tuple[set[tuple[int, str, int]], set[tuple[int, str, int]]]:
        """(segment id, field, index id) of every index file written whole, and of every build the
        indexer gave up on for now (its failure file), from one listing."""
        built, failed = set(), set()
        for f in self.files(collection_id):
            if f.kind == INDEX:
                built.add((f.segment_id, f.field, f.index_id))
            elif f.kind == FAILURE:
                failed.add((f.segment_id, f.field, f.index_id))
        return built, failed

    def has_index(self, collection_id: int, segment_id: int, field: str, index_id: int) -> bool:
        return self._exists(collection_id, index_name(segment_id, field, index_id))

    def has_failure(self, collection_id: int, segment_id: int, field: str, index_id: int) -> bool:
        return self._exists(collection_id, failure_name(segment_id, field, index_id))

    def size(self, collection_id: int) -> int:
        """Bytes of every file in the collection's index folder."""
        return sum(size for _, size in self._list(collection_id))

    def exists(self, collection_id: int) -> bool:
        """Whether the collection's index folder holds anything."""
        if self._fs is None:
            return Path(self._dir(collection_id)).exists()
        return bool(self._list(collection_id))

    # index files ----------------------------------------------------------------------------
    def write_index(
        self, collection_id: int, segment_id: int, field: str, index_id: int, save: Callable[[Path], None]
    ) -> str:
        """Write a segment's index file whole (``save`` writes a local file); returns its location."""
        name = index_name(segment_id, field, index_id)
        if self._fs is None:
            path = Path(self._dir(collection_id)) / name
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            save(tmp)
            os.replace(tmp, path)
            return str(path)
        with tempfile.TemporaryDirectory(prefix="walvus-index-") as scratch:
            local = Path(scratch) / name
            save(local)
            with self._remote(f"write {name} of collection {collection_id}"):
                with (
                    open(local, "rb") as src,
                    self._fs.open_output_stream(self._path(collection_id, name)) as dst,
                ):
                    shutil.copyfileobj(src, dst, _COPY_CHUNK)
        return self.index_location(collection_id, segment_id, field, index_id)

    @contextmanager
    def local_index(
        self, collection_id: int, segment_id: int, field: str, index_id: int
    ) -> Iterator[Path | None]:
        """A local file holding the index for the ``with`` block, or None when it is not built."""
        name = index_name(segment_id, field, index_id)
        if self._fs is None:
            path = Path(self._dir(collection_id)) / name
            yield path if path.exists() else None
            return
        with tempfile.TemporaryDirectory(prefix="walvus-index-") as scratch:
            local: Path | None = Path(scratch) / name
            try:
                with self._remote(f"read {name} of collection {collection_id}"):
                    with (
                        self._fs.open_input_stream(self._path(collection_id, name)) as src,
                        open(local, "wb") as dst,
                    ):
                        shutil.copyfileobj(src, dst, _COPY_CHUNK)
            except StorageError as exc:
                if not isinstance(exc.__cause__, FileNotFoundError):
                    raise
                local = None
            yield local

    # failure files --------------------------------------------------------------------------
    def write_failure(
        self, collection_id: int, segment_id: int, field: str, index_id: int, record: dict
    ) -> None:
        """Replace the failure file whole (readers never see half of one)."""
        name = failure_name(segment_id, field, index_id)
        data = json.dumps(record, sort_keys=True)
        if self._fs is None:
            path = Path(self._dir(collection_id)) / name
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
            tmp.write_text(data)
            os.replace(tmp, path)
            return
        with self._remote(f"write {name} of collection {collection_id}"):
            with self._fs.open_output_stream(self._path(collection_id, name)) as out:
                out.write(data.encode())

    def read_failure(self, collection_id: int, segment_id: int, field: str, index_id: int) -> dict | None:
        name = failure_name(segment_id, field, index_id)
        try:
            if self._fs is None:
                return json.loads((Path(self._dir(collection_id)) / name).read_text())
            with self._fs.open_input_stream(self._path(collection_id, name)) as src:
                return json.loads(src.read())
        except (OSError, ValueError, pa.ArrowException):
            return None

    def remove_failure(self, collection_id: int, segment_id: int, field: str, index_id: int) -> None:
        self.remove(collection_id, failure_name(segment_id, field, index_id))

    # removal --------------------------------------------------------------------------------
    def remove(self, collection_id: int, name: str) -> None:
        """Remove one file of the collection's index folder; a missing one is fine."""
        if self._fs is None:
            (Path(self._dir(collection_id)) / name).unlink(missing_ok=True)
            return
        try:
            with self._remote(f"remove {name} of collection {collection_id}"):
                self._fs.delete_file(self._path(collection_id, name))
        except StorageError as exc:
            if not isinstance(exc.__cause__, FileNotFoundError):
                raise

    def remove_collection(self, collection_id: int) -> None:
        """Remove every index file of the collection."""
        if self._fs is None:
            shutil.rmtree(self._dir(collection_id), ignore_errors=True)
            return
        for name, _ in self._list(collection_id):
            self.remove(collection_id, name)

    # plumbing -------------------------------------------------------------------------------
    def _dir(self, collection_id: int) -> str:
        return f"{self._base}/{collection_id}/indexes"

    def _path(self, collection_id: int, name: str) -> str:
        return f"{self._dir(collection_id)}/{name}"

    def _list(self, collection_id: int) -> list[tuple[str, int]]:
        """(name, size) of every file in the collection's index folder."""
        if self._fs is None:
            try:
                with os.scandir(self._dir(collection_id)) as entries:
                    return [(e.name, e.stat().st_size) for e in entries if e.is_file()]
            except (FileNotFoundError, NotADirectoryError):
                return []
        with self._remote(f"list the index files of collection {collection_id}"):
            infos = self._fs.get_file_info(pafs.FileSelector(self._dir(collection_id), allow_not_found=True))
        return [(i.base_name, int(i.size or 0)) for i in infos if i.type == pafs.FileType.File]

    def _exists(self, collection_id: int, name: str) -> bool:
        if self._fs is None:
            return (Path(self._dir(collection_id)) / name).exists()
        with self._remote(f"look for {name} of collection {collection_id}"):
            return self._fs.get_file_info(self._path(collection_id, name)).type == pafs.FileType.File

    @contextmanager
    def _remote(self, what: str) -> Iterator[None]:
        try:
            yield
        except (OSError, pa.ArrowException) as exc:
            raise StorageError(f"cannot {what} at {self.root}: {exc}") from exc
