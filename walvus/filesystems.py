"""One object store, two clients: delta-rs reads the tables, pyarrow's filesystems the rest.

``WALVUS_STORAGE_OPTIONS`` are delta-rs storage options (``AWS_ENDPOINT_URL``,
``AWS_ACCESS_KEY_ID``...). ``object_store(uri, options)`` translates them, here and only here, into
the arguments of the matching ``pyarrow.fs`` filesystem, so index files and collection removal
reach the same bucket with the same credentials as the tables. Keys are matched as delta-rs
matches them: case-insensitively, with or without the ``aws_``/``google_``/``azure_storage_``
prefix. An option with no pyarrow counterpart raises ``StorageError``: it is never dropped quietly.
Options that only steer delta-rs's commits to the Delta log (``AWS_S3_ALLOW_UNSAFE_RENAME``...) are
accepted and have no meaning for plain files.
"""

from __future__ import annotations

from typing import Any

import pyarrow.fs as pafs

from walvus.exceptions import StorageError

# delta-rs option (lower case, prefix removed) -> S3FileSystem argument
_S3 = {
    "access_key_id": "access_key",
    "secret_access_key": "secret_key",
    "session_token": "session_token",
    "token": "session_token",
    "region": "region",
    "default_region": "region",
    "endpoint": "endpoint_override",
    "endpoint_url": "endpoint_override",
}
# steer the Delta log's commits only: nothing to do for a plain file
_S3_DELTA_ONLY = {
    "s3_allow_unsafe_rename",
    "s3_locking_provider",
    "conditional_put",
    "copy_if_not_exists",
    "dynamodb_table_name",
    "delta_dynamo_table_name",
}
_AZURE = {
    "account_name": "account_name",
    "account": "account_name",
    "account_key": "account_key",
    "access_key": "account_key",
    "key": "account_key",
    "client_id": "client_id",
    "client_secret": "client_secret",
    "tenant_id": "tenant_id",
    "sas_key": "sas_token",
    "sas_token": "sas_token",
}
_TRUE = {"true", "1", "yes", "on"}


def is_local(uri: str) -> bool:
    """A plain path or a ``file://`` URI: read and written with the local filesystem."""
    return "://" not in uri or uri.startswith("file://")


def object_store(uri: str, options: dict[str, str] | None = None) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem of an object-store URI (s3://, gs://, az://) and the path in it."""
    scheme, _, rest = uri.partition("://")
    opts = {str(k): str(v) for k, v in (options or {}).items()}
    try:
        if scheme in ("s3", "s3a"):
            return pafs.S3FileSystem(**_s3_args(uri, opts)), rest.rstrip("/")
        if scheme in ("gs", "gcs"):
            _untranslated(
                uri, opts, "pyarrow's GcsFileSystem takes credentials from GOOGLE_APPLICATION_CREDENTIALS"
            )
            return pafs.GcsFileSystem(), rest.rstrip("/")
        if scheme in ("az", "azure"):
            return pafs.AzureFileSystem(**_azure_args(uri, opts)), rest.rstrip("/")
    except StorageError:
        raise
    except (OSError, ValueError, TypeError) as exc:
        raise StorageError(f"cannot reach {uri}: {exc}") from exc
    raise StorageError(f"storage URI {uri}: scheme {scheme}:// is not supported (use s3://, gs:// or az://)")


def _s3_args(uri: str, opts: dict[str, str]) -> dict[str, Any]:
    args: dict[str, Any] = {}
    allow_http = False
    unknown = {}
    for key, value in opts.items():
        name = key.lower().removeprefix("aws_")
        if name in _S3:
            args[_S3[name]] = value
        elif name == "allow_http":
            allow_http = value.lower() in _TRUE
        elif name == "virtual_hosted_style_request":
            args["force_virtual_addressing"] = value.lower() in _TRUE
        elif name not in _S3_DELTA_ONLY and key.lower() not in _S3_DELTA_ONLY:
            unknown[key] = value
    _untranslated(uri, unknown, "pyarrow's S3FileSystem has no such setting")
    endpoint = args.get("endpoint_override")
    if endpoint and "://" not in endpoint:
        args["scheme"] = "http" if allow_http else "https"
    elif endpoint and endpoint.startswith("http://") and not allow_http:
        raise StorageError(f"storage URI {uri}: endpoint {endpoint} is plain http; set AWS_ALLOW_HTTP=true")
    return args


def _azure_args(uri: str, opts: dict[str, str]) -> dict[str, Any]:
    args: dict[str, Any] = {}
    unknown = {}
    for key, value in opts.items():
        name = key.lower().removeprefix("azure_").removeprefix("storage_")
        if name in _AZURE:
            args[_AZURE[name]] = value
        elif name == "use_emulator" and value.lower() in _TRUE:
            args.update(blob_storage_authority="127.0.0.1:10000", blob_storage_scheme="http")
            args.setdefault("account_name", "devstoreaccount1")
        else:
            unknown[key] = value
    _untranslated(uri, unknown, "pyarrow's AzureFileSystem has no such setting")
    if "account_name" not in args:
        raise StorageError(f"storage URI {uri}: set AZURE_STORAGE_ACCOUNT_NAME in WALVUS_STORAGE_OPTIONS")
    return args


def _untranslated(uri: str, unknown: dict[str, str], why: str) -> None:
    if unknown:
        raise StorageError(
            f"storage URI {uri}: WALVUS_STORAGE_OPTIONS {', '.join(sorted(unknown))} cannot be used for "
            f"index files ({why}); set the matching environment variable instead"
        )
