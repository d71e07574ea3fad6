"""alter_collection_field through the real pymilvus MilvusClient."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pymilvus import DataType, MilvusClient, MilvusException

from tests.memory import RunningGateway, running_gateway


@pytest.fixture(scope="module")
def gw() -> Iterator[RunningGateway]:
    with running_gateway() as gw:
        yield gw


def _field(client: MilvusClient, name: str, field: str) -> dict:
    return next(f for f in client.describe_collection(name)["fields"] if f["name"] == field)


def test_max_length_and_max_capacity_change_what_later_writes_may_hold(client: MilvusClient) -> None:
    s = MilvusClient.create_schema(auto_id=False)
    s.add_field("id", DataType.INT64, is_primary=True)
    s.add_field("vec", DataType.FLOAT_VECTOR, dim=2)
    s.add_field("title", DataType.VARCHAR, max_length=4)
    s.add_field("tags", DataType.ARRAY, element_type=DataType.VARCHAR, max_capacity=2, max_length=3)
    s.add_field("n", DataType.INT64)
    client.create_collection("alt", schema=s)
    row = {"id": 1, "vec": [1.0, 0.0], "title": "abcdefgh", "tags": ["a", "b", "c"], "n": 1}
    with pytest.raises(MilvusException):
        client.insert("alt", [row])
    before = client.describe_collection("alt")["update_timestamp"]
    client.alter_collection_field("alt", "title", {"max_length": 16, "mmap.enabled": True})
    client.alter_collection_field("alt", "tags", {"max_capacity": 4})
    assert _field(client, "alt", "title")["params"]["max_length"] == 16
    assert _field(client, "alt", "tags")["params"]["max_capacity"] == 4
    assert client.describe_collection("alt")["update_timestamp"] > before
    assert client.insert("alt", [row])["insert_count"] == 1

    for field, params, match in (
        ("id", {"max_length": 8}, "primary key"),
        ("n", {"max_length": 8}, "applies to VARCHAR"),
        ("title", {"max_capacity": 8}, "applies to ARRAY"),
        ("title", {"max_length": 0}, r"must be in \[1, 65535\]"),
        ("title", {"nullable": True}, "cannot be altered"),
        ("missing", {"max_length": 8}, "does not exist"),
    ):
        with pytest.raises(MilvusException, match=match):
            client.alter_collection_field("alt", field, params)
    assert _field(client, "alt", "title")["params"]["max_length"] == 16  # refusals changed nothing


def test_index_mmap_property_is_set_described_and_dropped_while_released(client: MilvusClient) -> None:
    client.create_collection("alti", dimension=2)  # quick setup: indexed and loaded
    (index_name,) = client.list_indexes("alti")
    with pytest.raises(MilvusException, match="release collection alti first"):
        client.alter_index_properties("alti", index_name, {"mmap.enabled": True})
    client.release_collection("alti")
    client.alter_index_properties("alti", index_name, {"mmap.enabled": True})
    assert client.describe_index("alti", index_name)["mmap.enabled"] == "true"
    for props, match in (({"nlist": 8}, "only mmap.enabled"), ({"mmap.enabled": "maybe"}, "true or false")):
        with pytest.raises(MilvusException, match=match):
            client.alter_index_properties("alti", index_name, props)
    with pytest.raises(MilvusException, match="index not found"):
        client.alter_index_properties("alti", "nope", {"mmap.enabled": True})
    client.drop_index_properties("alti", index_name, ["mmap.enabled"])
    assert "mmap.enabled" not in client.describe_index("alti", index_name)
    client.load_collection("alti")
