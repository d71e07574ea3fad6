"""The index store on local disk and on an S3 server (moto): the same calls, the same answers.

Then what stays local only (a writer's temporary file, renamed into place), and the translation of
delta-rs storage options into pyarrow's filesystems, where an option with no counterpart fails."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.fs as pafs
import pytest

from indexer.index import VectorIndex
from schemas.index_spec import IndexSpec
from tests.s3 import S3Server
from walvus.exceptions import StorageError
from walvus.filesystems import object_store
from walvus.index_store import FAILURE, INDEX, IndexStore
from walvus.storage import SegmentStore

DIM = 8


@pytest.fixture(params=["local", "s3"])
def indexes(request: pytest.FixtureRequest, tmp_path: Path) -> IndexStore:
    if request.param == "local":
        return IndexStore(str(tmp_path / "tables"))
    s3: S3Server = request.getfixturevalue("s3")
    return IndexStore(f"{s3.bucket()}/tables", s3.options)


def _index(n: int = 20) -> VectorIndex:
    spec = IndexSpec.parse("FLAT", "L2", {}, DIM, "FLOAT_VECTOR")
    rng = np.random.default_rng(0)
    return VectorIndex.build(spec, rng.random((n, DIM), dtype=np.float32))


def test_an_index_written_is_listed_and_read_back_whole(indexes: IndexStore) -> None:
    assert indexes.files(7) == [] and not indexes.exists(7) and indexes.built(7) == set()
    with indexes.local_index(7, 1, "vec", 3) as missing:
        assert missing is None
    built = _index()
    where = indexes.write_index(7, 1, "vec", 3, built.save)
    assert where == indexes.index_location(7, 1, "vec", 3) and where.endswith("/7/indexes/1_vec_3.faiss")
    assert indexes.has_index(7, 1, "vec", 3) and not indexes.has_index(7, 2, "vec", 3)
    assert indexes.built(7) == {(1, "vec", 3)} and indexes.exists(7) and not indexes.exists(8)
    with indexes.local_index(7, 1, "vec", 3) as local:
        assert local is not None
        spec = IndexSpec.parse("FLAT", "L2", {}, DIM, "FLOAT_VECTOR")
        loaded = VectorIndex.load(local, spec, mmap=True)
    assert loaded.ntotal == 20
    # the mapped copy outlives the block: it still answers a search
    _, ids = loaded.faiss_index.search(np.zeros((1, DIM), dtype=np.float32), 3)
    assert len(set(ids[0].tolist())) == 3 and min(ids[0]) >= 0
    (f,) = indexes.files(7)
    assert (f.name, f.segment_id, f.field, f.index_id, f.kind) == ("1_vec_3.faiss", 1, "vec", 3, INDEX)
    assert f.size == indexes.size(7) > 0


def test_failure_files_are_written_read_and_removed(indexes: IndexStore) -> None:
    assert indexes.read_failure(7, 1, "vec", 3) is None and not indexes.has_failure(7, 1, "vec", 3)
    indexes.write_failure(7, 1, "vec", 3, {"reason": "boom", "attempts": 1})
    indexes.write_failure(7, 1, "vec", 3, {"reason": "boom", "attempts": 2})
    assert indexes.read_failure(7, 1, "vec", 3) == {"reason": "boom", "attempts": 2}
    assert indexes.has_failure(7, 1, "vec", 3) and not indexes.has_index(7, 1, "vec", 3)
    assert [(f.name, f.kind) for f in indexes.files(7)] == [("1_vec_3.failed.json", FAILURE)]
    assert indexes.built_and_failed(7) == (set(), {(1, "vec", 3)})
    indexes.remove_failure(7, 1, "vec", 3)
    indexes.remove_failure(7, 1, "vec", 3)  # twice: a missing file is fine
    assert indexes.files(7) == []


def test_a_collections_index_files_go_with_it(indexes: IndexStore) -> None:
    for seg in (1, 2):
        indexes.write_index(7, seg, "vec", 3, _index().save)
    indexes.write_index(8, 1, "vec", 3, _index().save)
    indexes.remove(7, "1_vec_3.faiss")
    assert indexes.built(7) == {(2, "vec", 3)}
    indexes.remove_collection(7)
    assert indexes.files(7) == [] and not indexes.exists(7)
    assert indexes.built(8) == {(1, "vec", 3)}


def test_the_segment_store_keeps_index_files_beside_the_tables_on_s3(s3: S3Server) -> None:
    root = f"{s3.bucket()}/tables"
    store = SegmentStore(root, s3.options)
    assert store.indexes.remote and store.indexes.location(5) == f"{root}/5/indexes"
    assert not store.collection_exists(5)
    store.indexes.write_index(5, 1, "vec", 3, _index().save)
    key = f"{root.removeprefix('s3://')}/5/indexes/1_vec_3.faiss"
    assert s3.filesystem().get_file_info(key).type == pafs.FileType.File
    assert store.collection_exists(5)
    store.remove_collection(5)
    assert not store.collection_exists(5)
    assert s3.filesystem().get_file_info(key).type == pafs.FileType.NotFound


def test_local_files_are_written_through_a_temporary_file(tmp_path: Path) -> None:
    indexes = IndexStore(str(tmp_path))
    seen: list[str] = []

    def save(path: Path) -> None:
        seen.append(path.name)
        path.write_bytes(b"index")

    where = indexes.write_index(7, 1, "vec", 3, save)
    assert seen[0].startswith("1_vec_3.tmp") and Path(where) == tmp_path / "7" / "indexes" / "1_vec_3.faiss"
    assert [p.name for p in (tmp_path / "7" / "indexes").iterdir()] == ["1_vec_3.faiss"]
    indexes.write_failure(7, 1, "vec", 3, {"reason": "x"})
    assert json.loads((tmp_path / "7" / "indexes" / "1_vec_3.failed.json").read_text()) == {"reason": "x"}
    (tmp_path / "7" / "indexes" / "notes.txt").write_text("not an index file")
    assert sorted(f.name for f in indexes.files(7)) == ["1_vec_3.failed.json", "1_vec_3.faiss"]


def test_s3_options_are_translated_and_delta_only_ones_accepted() -> None:
    fs, path = object_store(
        "s3://bucket/walvus/",
        {
            "aws_endpoint_url": "localhost:9000",
            "AWS_ACCESS_KEY_ID": "k",
            "AWS_SECRET_ACCESS_KEY": "s",
            "AWS_REGION": "eu-west-1",
            "AWS_ALLOW_HTTP": "true",
            "AWS_S3_ALLOW_UNSAFE_RENAME": "true",
        },
    )
    assert isinstance(fs, pafs.S3FileSystem) and path == "bucket/walvus"
    assert fs.region == "eu-west-1"


def test_an_option_with_no_filesystem_counterpart_fails_clearly() -> None:
    with pytest.raises(StorageError, match="AWS_PROFILE_NAME_TYPO cannot be used for index files"):
        object_store("s3://bucket", {"AWS_PROFILE_NAME_TYPO": "x"})
    with pytest.raises(StorageError, match="set AWS_ALLOW_HTTP=true"):
        object_store("s3://bucket", {"AWS_ENDPOINT_URL": "http://127.0.0.1:9000"})
    with pytest.raises(StorageError, match="GOOGLE_APPLICATION_CREDENTIALS"):
        object_store("gs://bucket", {"google_service_account": "/key.json"})
    with pytest.raises(StorageError, match="set AZURE_STORAGE_ACCOUNT_NAME"):
        object_store("az://container", {})
    with pytest.raises(StorageError, match="scheme hdfs:// is not supported"):
        object_store("hdfs://namenode/walvus", {})
    with pytest.raises(StorageError, match="AWS_PROFILE_NAME_TYPO"):
        SegmentStore("s3://bucket", {"AWS_PROFILE_NAME_TYPO": "x"})  # at start, not at the first build
