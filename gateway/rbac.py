"""User, role, grant and privilege-group RPCs (Milvus's credential and RBAC API).

Passwords arrive base64-encoded (pymilvus's ``CreateCredential``/``UpdateCredential``) and are
stored only as argon2 hashes. These RPCs work whether or not authorization is enabled, as in
Milvus; with it enabled, ``gateway.authz`` checks who may call them.
"""

from __future__ import annotations

import base64
import binascii
import logging

from pymilvus.grpc_gen import common_pb2, milvus_pb2

from gateway.auth import caller
from gateway.errors import OK
from schemas.exceptions import InvalidArgument
from schemas.rbac import Grant
from walvus.databases import current_db
from walvus.rbac import RbacState
from walvus.rbac_ddl import RbacDdl

log = logging.getLogger(__name__)


def _password(raw: str, what: str = "password") -> str:
    try:
        return base64.b64decode(raw, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"the {what} must be base64-encoded UTF-8 (as pymilvus sends it)") from exc


class RbacRpcs:
    def __init__(self, ddl: RbacDdl, enforced: bool) -> None:
        self.ddl = ddl
        self.enforced = enforced

    @property
    def state(self) -> RbacState:
        return self.ddl.state

    # users -------------------------------------------------------------------------------------
    def create_credential(self, req: milvus_pb2.CreateCredentialRequest) -> common_pb2.Status:
        self.ddl.create_user(req.username, _password(req.password), req.description)
        log.info("user created user=%s", req.username)
        return OK

    def update_credential(self, req: milvus_pb2.UpdateCredentialRequest) -> common_pb2.Status:
        skip = self.enforced and self.state.is_superuser(caller())  # Milvus: a superuser may reset
        old = _password(req.oldPassword, "old password") if req.oldPassword else ""
        self.ddl.update_password(
            req.username, old, _password(req.newPassword, "new password"), skip_old_check=skip
        )
        log.info("password updated user=%s", req.username)
        return OK

    def delete_credential(self, req: milvus_pb2.DeleteCredentialRequest) -> common_pb2.Status:
        self.ddl.drop_user(req.username)
        log.info("user dropped user=%s", req.username)
        return OK

    def list_cred_users(self, req: milvus_pb2.ListCredUsersRequest) -> milvus_pb2.ListCredUsersResponse:
        return milvus_pb2.ListCredUsersResponse(status=OK, usernames=self.state.user_names())

    def select_user(self, req: milvus_pb2.SelectUserRequest) -> milvus_pb2.SelectUserResponse:
        names = [req.user.name] if req.user.name else self.state.user_names()
        results = []
        for name in names:
            if self.ddl.password_hash(name) is None:
                continue  # Milvus: an unknown user answers no rows
            record = self.state.user(name)
            roles = self.state.roles_of(name) if req.include_role_info else []
            results.append(
                milvus_pb2.UserResult(
                    user=milvus_pb2.UserEntity(name=name),
                    roles=[milvus_pb2.RoleEntity(name=r) for r in roles],
                    description=record.description if record is not None else "",
                )
            )
        return milvus_pb2.SelectUserResponse(status=OK, results=results)

    # roles -------------------------------------------------------------------------------------
    def create_role(self, req: milvus_pb2.CreateRoleRequest) -> common_pb2.Status:
        self.ddl.create_role(req.entity.name, req.entity.description)
        log.info("role created role=%s", req.entity.name)
        return OK

    def alter_role(self, req: milvus_pb2.AlterRoleRequest) -> common_pb2.Status:
        self.ddl.alter_role(req.role_name, req.description)
        return OK

    def drop_role(self, req: milvus_pb2.DropRoleRequest) -> common_pb2.Status:
        self.ddl.drop_role(req.role_name, force=req.force_drop)
        log.info("role dropped role=%s", req.role_name)
        return OK

    def operate_user_role(self, req: milvus_pb2.OperateUserRoleRequest) -> common_pb2.Status:
        if req.type == milvus_pb2.AddUserToRole:
            self.ddl.grant_role(req.username, req.role_name)
        else:
            self.ddl.revoke_role(req.username, req.role_name)
        return OK

    def select_role(self, req: milvus_pb2.SelectRoleRequest) -> milvus_pb2.SelectRoleResponse:
        if req.role.name:
            one = self.state.role(req.role.name)
            roles = [one] if one is not None else []  # Milvus: an unknown role answers no rows
        else:
            roles = self.state.roles()
        results = [
            milvus_pb2.RoleResult(
                role=milvus_pb2.RoleEntity(name=r.name, description=r.description),
                users=[milvus_pb2.UserEntity(name=u) for u in self.state.members(r.name)]
                if req.include_user_info
                else [],
            )
            for r in roles
        ]
        return milvus_pb2.SelectRoleResponse(status=OK, results=results)

    # grants ------------------------------------------------------------------------------------
    def operate_privilege(self, req: milvus_pb2.OperatePrivilegeRequest) -> common_pb2.Status:
        e = req.entity
        grant = self.ddl.v1_grant(
            e.role.name, e.object.name, e.object_name, e.grantor.privilege.name, e.db_name, caller()
        )
        self._apply(grant, req.type)
        return OK

    def operate_privilege_v2(self, req: milvus_pb2.OperatePrivilegeV2Request) -> common_pb2.Status:
        grant = self.ddl.v2_grant(
            req.role.name, req.grantor.privilege.name, req.db_name, req.collection_name, caller()
        )
        self._apply(grant, req.type)
        return OK

    def _apply(self, grant: Grant, op: int) -> None:
        if op == milvus_pb2.Grant:
            self.ddl.grant(grant)
        else:
            self.ddl.revoke(grant)
        log.info("privilege %s role=%s privilege=%s object=%s/%s db=%s", "granted" if op == milvus_pb2.Grant
                 else "revoked", grant.role, grant.privilege, grant.object_type, grant.object_name, grant.db_name)  # fmt: skip

    def select_grant(self, req: milvus_pb2.SelectGrantRequest) -> milvus_pb2.SelectGrantResponse:
        """A role's grants in one database (the request's, else the current one; ``*``: all), with
        the grants made for every database; optionally of one object type and name."""
        e = req.entity
        db = e.db_name or current_db()
        entities = [
            milvus_pb2.GrantEntity(
                role=milvus_pb2.RoleEntity(name=g.role),
                object=milvus_pb2.ObjectEntity(name=g.object_type),
                object_name=g.object_name,
                db_name=g.db_name,
                grantor=milvus_pb2.GrantorEntity(
                    user=milvus_pb2.UserEntity(name=g.grantor),
                    privilege=milvus_pb2.PrivilegeEntity(name=g.privilege),
                ),
            )
            for g in self.state.grants(e.role.name)
            if (db == "*" or g.db_name in (db, "*"))
            and (not e.object.name or g.object_type == e.object.name)
            and (not e.object_name or g.object_name == e.object_name)
        ]
        return milvus_pb2.SelectGrantResponse(status=OK, entities=entities)

    # privilege groups --------------------------------------------------------------------------
    def create_privilege_group(self, req: milvus_pb2.CreatePrivilegeGroupRequest) -> common_pb2.Status:
        self.ddl.create_group(req.group_name)
        return OK

    def drop_privilege_group(self, req: milvus_pb2.DropPrivilegeGroupRequest) -> common_pb2.Status:
        self.ddl.drop_group(req.group_name)
        return OK

    def list_privilege_groups(
        self, req: milvus_pb2.ListPrivilegeGroupsRequest
    ) -> milvus_pb2.ListPrivilegeGroupsResponse:
        groups = [
            milvus_pb2.PrivilegeGroupInfo(
                group_name=g.name, privileges=[milvus_pb2.PrivilegeEntity(name=p) for p in g.privileges]
            )
            for g in self.state.groups()
        ]
        return milvus_pb2.ListPrivilegeGroupsResponse(status=OK, privilege_groups=groups)

    def operate_privilege_group(self, req: milvus_pb2.OperatePrivilegeGroupRequest) -> common_pb2.Status:
        privileges = [p.name for p in req.privileges]
        self.ddl.change_group(req.group_name, privileges, add=req.type == milvus_pb2.AddPrivilegesToGroup)
        return OK

    def handlers(self) -> dict:
        return {
            "CreateCredential": self.create_credential,
            "UpdateCredential": self.update_credential,
            "DeleteCredential": self.delete_credential,
            "ListCredUsers": self.list_cred_users,
            "SelectUser": self.select_user,
            "CreateRole": self.create_role,
            "AlterRole": self.alter_role,
            "DropRole": self.drop_role,
            "OperateUserRole": self.operate_user_role,
            "SelectRole": self.select_role,
            "OperatePrivilege": self.operate_privilege,
            "OperatePrivilegeV2": self.operate_privilege_v2,
            "SelectGrant": self.select_grant,
            "CreatePrivilegeGroup": self.create_privilege_group,
            "DropPrivilegeGroup": self.drop_privilege_group,
            "ListPrivilegeGroups": self.list_privilege_groups,
            "OperatePrivilegeGroup": self.operate_privilege_group,
        }
