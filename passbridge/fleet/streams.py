"""The JetStream objects both ends create when missing, with the contract's config.

Sites and the hub may start in any order, so either creates the audit
stream or a site's bucket if it is not there yet; both go through here so
that the configuration cannot differ between them (JetStream refuses a
second ``add_stream`` with another config). nats is imported only here
and in the modules that run a link, never by wire.py or a plain serve.
"""

from __future__ import annotations

from typing import Any

from passbridge.fleet import wire


async def ensure_audit_stream(js: Any) -> None:
    """``PASSBRIDGE_AUDIT`` on ``passbridge.audit.>``: file storage, 2-minute
    duplicate window (contract section 1)."""
    from nats.js.api import StorageType
    from nats.js.errors import NotFoundError

    try:
        await js.stream_info(wire.AUDIT_STREAM)
    except NotFoundError:
        await js.add_stream(name=wire.AUDIT_STREAM, subjects=[wire.AUDIT_SUBJECTS],
                            storage=StorageType.FILE,
                            duplicate_window=wire.AUDIT_DUPLICATE_WINDOW_S)


async def site_bucket(js: Any, site_id: str) -> Any:
    """The site's KV bucket of signed statements (history 1), created if missing."""
    from nats.js.errors import BucketNotFoundError, NotFoundError

    bucket = wire.kv_bucket(site_id)
    try:
        return await js.key_value(bucket)
    except (BucketNotFoundError, NotFoundError):
        return await js.create_key_value(bucket=bucket, history=1)
