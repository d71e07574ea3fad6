"""``/v2/vectordb/{users,roles}/*``: the RBAC RPCs, translated as pymilvus sends them.

They answer what the gRPC servicer answers: where it does not implement users and roles, each
endpoint says so (code 3000 and the RPC's name), never a silent success.
"""

from __future__ import annotations

from typing import Any

from pymilvus.client.prepare import Prepare
from pymilvus.grpc_gen import milvus_pb2

from gateway.rest.calls import Body, Rpc, client_side, ok

ADD, REMOVE = milvus_pb2.OperateUserRoleType.AddUserToRole, milvus_pb2.OperateUserRoleType.RemoveUserFromRole
GRANT, REVOKE = milvus_pb2.OperatePrivilegeType.Grant, milvus_pb2.OperatePrivilegeType.Revoke


def _user(body: Body) -> str:
    return body.str("userName", required=True)


def _role(body: Body) -> str:
    return body.str("roleName", required=True)


def list_users(rpc: Rpc, body: Body) -> dict[str, Any]:
    return ok(list(rpc("ListCredUsers", Prepare.list_usernames_request()).usernames))


def describe_user(rpc: Rpc, body: Body) -> dict[str, Any]:
    name = _user(body)
    response = rpc("SelectUser", client_side(Prepare.select_user_request, name, True))
    return ok([role.name for result in response.results if result.user.name == name for role in result.roles])


def create_user(rpc: Rpc, body: Body) -> dict[str, Any]:
    request = client_side(Prepare.create_user_request, _user(body), body.str("password", required=True))
    rpc("CreateCredential", request)
    return ok()


def update_password(rpc: Rpc, body: Body) -> dict[str, Any]:
    request = client_side(
        Prepare.update_password_request,
        _user(body),
        body.str("password", required=True),
        body.str("newPassword", required=True),
    )
    rpc("UpdateCredential", request)
    return ok()


def drop_user(rpc: Rpc, body: Body) -> dict[str, Any]:
    rpc("DeleteCredential", client_side(Prepare.delete_user_request, _user(body)))
    return ok()


def _user_role(rpc: Rpc, body: Body, kind: int) -> dict[str, Any]:
    rpc("OperateUserRole", client_side(Prepare.operate_user_role_request, _user(body), _role(body), kind))
    return ok()


def grant_role(rpc: Rpc, body: Body) -> dict[str, Any]:
    return _user_role(rpc, body, ADD)


def revoke_role(rpc: Rpc, body: Body) -> dict[str, Any]:
    return _user_role(rpc, body, REMOVE)


def list_roles(rpc: Rpc, body: Body) -> dict[str, Any]:
    response = rpc("SelectRole", client_side(Prepare.select_role_request, "", False))
    return ok([result.role.name for result in response.results])


def describe_role(rpc: Rpc, body: Body) -> dict[str, Any]:
    request = client_side(Prepare.select_grant_request, _role(body), "", "", body.str("dbName"))
    response = rpc("SelectGrant", request)
    return ok(
        [
            {
                "objectType": g.object.name,
                "objectName": g.object_name,
                "privilege": g.grantor.privilege.name,
                "grantor": g.grantor.user.name,
                "dbName": g.db_name,
            }
            for g in response.entities
        ]
    )


def create_role(rpc: Rpc, body: Body) -> dict[str, Any]:
    rpc("CreateRole", client_side(Prepare.create_role_request, _role(body)))
    return ok()


def drop_role(rpc: Rpc, body: Body) -> dict[str, Any]:
    rpc("DropRole", client_side(Prepare.drop_role_request, _role(body), body.bool("forceDrop")))
    return ok()


def _privilege(rpc: Rpc, body: Body, kind: int) -> dict[str, Any]:
    request = client_side(
        Prepare.operate_privilege_request,
        _role(body),
        body.str("objectType", required=True),
        body.str("objectName", required=True),
        body.str("privilege", required=True),
        body.str("dbName"),
        kind,
    )
    rpc("OperatePrivilege", request)
    return ok()


def grant_privilege(rpc: Rpc, body: Body) -> dict[str, Any]:
    return _privilege(rpc, body, GRANT)


def revoke_privilege(rpc: Rpc, body: Body) -> dict[str, Any]:
    return _privilege(rpc, body, REVOKE)


def _privilege_v2(rpc: Rpc, body: Body, kind: int) -> dict[str, Any]:
    request = client_side(
        Prepare.operate_privilege_v2_request,
        _role(body),
        body.str("privilege", required=True),
        kind,
        body.str("dbName", "*"),
        body.str("collectionName", "*"),
    )
    rpc("OperatePrivilegeV2", request)
    return ok()


def grant_privilege_v2(rpc: Rpc, body: Body) -> dict[str, Any]:
    return _privilege_v2(rpc, body, GRANT)


def revoke_privilege_v2(rpc: Rpc, body: Body) -> dict[str, Any]:
    return _privilege_v2(rpc, body, REVOKE)
