"""Resource groups: the declarative placement, and the RPCs through the real pymilvus MilvusClient."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pymilvus import MilvusClient, MilvusException
from pymilvus.client.types import ResourceGroupConfig

from schemas.resource_groups import DEFAULT_GROUP, DEFAULT_RESOURCE_GROUP, ResourceGroupInfo
from tests.memory import RunningGateway, running_gateway
from walvus.resource_groups import assign

D = DEFAULT_RESOURCE_GROUP


def rg(
    name: str, requests: int, limits: int, frm: tuple[str, ...] = (), to: tuple[str, ...] = ()
) -> ResourceGroupInfo:
    return ResourceGroupInfo(name, requests, limits, frm, to)


def config(requests: int, limits: int) -> ResourceGroupConfig:
    return ResourceGroupConfig(
        requests={"node_num": requests},
        limits={"node_num": limits},
        transfer_from=[{"resource_group": D}],
        transfer_to=[{"resource_group": D}],
    )


@pytest.fixture(scope="module")
def gw() -> Iterator[RunningGateway]:
    with running_gateway() as gw:
        yield gw


# placement ------------------------------------------------------------------------------------
def test_spare_nodes_stay_in_the_default_group() -> None:
    assert assign([1, 2, 3], [DEFAULT_GROUP, rg("a", 0, 0)]) == {D: [1, 2, 3], "a": []}


def test_requests_take_nodes_in_creation_order_and_limits_give_them_back() -> None:
    placed = assign([1, 2, 3], [DEFAULT_GROUP, rg("a", 2, 5), rg("b", 4, 4)])
    assert len(placed["a"]) == 2 and len(placed["b"]) == 1 and placed[D] == []
    placed = assign([1], [DEFAULT_GROUP, rg("a", 0, 0, to=("b",)), rg("b", 0, 1)])
    assert placed == {D: [1], "a": [], "b": []}  # nothing requested: the node stays in the default group
    assert sorted(
        n for ids in assign([1, 2, 3, 4], [DEFAULT_GROUP, rg("a", 1, 1), rg("b", 1, 2)]).values() for n in ids
    ) == [1, 2, 3, 4]


def test_a_group_takes_from_its_transfer_from_group_first() -> None:
    groups = [DEFAULT_GROUP, rg("a", 2, 2), rg("b", 1, 1, frm=("a",))]
    placed = assign([1, 2, 3], groups)
    assert len(placed["a"]) == 2 and len(placed["b"]) == 1
    placed = assign([1, 2], groups)  # a is not over its requests: b takes nothing from it
    assert len(placed["a"]) == 2 and placed["b"] == []


# RPCs -----------------------------------------------------------------------------------------
def test_the_pymilvus_resource_group_flow(client: MilvusClient) -> None:
    client.create_collection("rgc", dimension=2, consistency_level="Strong")
    client.insert("rgc", [{"id": 1, "vector": [1.0, 0.0]}])
    client.create_resource_group("rg1")
    client.create_resource_group("rg2", config=config(0, 0))
    client.create_resource_group("rg1")  # the same config again: a no-op, as in Milvus
    with pytest.raises(MilvusException, match="already exists with another config"):
        client.create_resource_group("rg1", config=config(1, 1))
    with pytest.raises(MilvusException, match="invalid"):
        client.create_resource_group("1bad-name")
    assert client.list_resource_groups() == [D, "rg1", "rg2"]
    client.update_resource_groups({"rg1": config(1, 5), "rg2": config(4, 4)})
    one, two, default = (client.describe_resource_group(n) for n in ("rg1", "rg2", D))
    assert one.num_available_node == 1 and [n.node_id for n in one.nodes] == [1]
    assert one.config.requests.node_num == 1 and one.config.limits.node_num == 5
    assert two.num_available_node == 0 and default.num_available_node == 0
    assert default.num_loaded_replica == {"rgc": 1}

    client.transfer_replica(D, "rg1", "rgc", 1)
    assert client.describe_resource_group("rg1").num_loaded_replica == {"rgc": 1}
    assert client.describe_replica("rgc")[0].resource_group == "rg1"
    assert client.search("rgc", [[1.0, 0.0]], limit=1)[0][0]["id"] == 1  # still served
    with pytest.raises(MilvusException, match="holds 0 replica"):
        client.transfer_replica(D, "rg1", "rgc", 1)
    with pytest.raises(MilvusException, match="holds replicas of rgc"):
        client.update_resource_groups({"rg1": config(0, 0)}) or client.drop_resource_group("rg1")
    client.transfer_replica("rg1", D, "rgc", 1)
    with pytest.raises(MilvusException, match="still requests or allows nodes"):
        client.drop_resource_group("rg2")

    client.update_resource_groups({"rg1": config(0, 0), "rg2": config(0, 0)})
    assert client.describe_resource_group(D).num_available_node == 1
    client.drop_resource_group("rg1")
    client.drop_resource_group("rg2")
    client.drop_resource_group("rg2")  # missing: succeeds, as in Milvus
    with pytest.raises(MilvusException, match="cannot be dropped"):
        client.drop_resource_group(D)
    assert client.list_resource_groups() == [D]


def test_load_into_a_group_and_the_legacy_transfer_node(client: MilvusClient) -> None:
    client.create_collection("rgl", dimension=2, consistency_level="Strong")
    client.release_collection("rgl")
    client.create_resource_group("rg3")
    client.load_collection("rgl", resource_groups=["rg3"])
    assert client.describe_replica("rgl")[0].resource_group == "rg3"
    with pytest.raises(MilvusException, match="is loaded in resource group rg3"):
        client.load_collection("rgl", resource_groups=[D])
    client.load_collection("rgl")  # already loaded, no group named: stays where it is
    assert client.describe_replica("rgl")[0].resource_group == "rg3"
    client._get_connection().transfer_node(D, "rg3", 1)
    rg3 = client.describe_resource_group("rg3")
    assert rg3.num_available_node == 1 and rg3.config.requests.node_num == 1
    with pytest.raises(MilvusException, match="fewer than"):
        client._get_connection().transfer_node(D, "rg3", 1)
    client._get_connection().transfer_node("rg3", D, 1)
    assert client.describe_resource_group(D).num_available_node == 1
    client.release_collection("rgl")
    client.load_collection("rgl")  # released and loaded with no group: back in the default one
    assert client.describe_replica("rgl")[0].resource_group == D
    client.drop_resource_group("rg3")
