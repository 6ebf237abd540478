"""An admin's side of push from ServiceNow: the hook URL and the Business Rules to paste, the key
rotation that turns push on, the status, the removal.

ServiceNow has no webhook subscription API, and our OAuth user (itil-level) may not create
Business Rules or system properties, so an admin pastes what `setup` answers. Push is off until
the first rotate: it makes the hook id (random, so the URL names no tenant) and the 32-byte key,
and its answer is the only place the key is ever shown. A rotate voids the old hook id and key at
once (in this process; other instances within the hook cache's few seconds).
"""

from __future__ import annotations

import base64
import json
import logging
from datetime import datetime, timedelta
from secrets import token_urlsafe
from urllib.parse import urlsplit, urlunsplit

from shared.clock import SYSTEM_CLOCK, Clock
from shared.errors import ConnectionNotReady
from shared.ports import ConnectionStore
from shared.push_models import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    BusinessRule,
    PushRotated,
    PushSetup,
    PushStatus,
    PushTable,
    PushTenant,
    key_property,
    tenant_suffix,
)
from shared.push_ports import PushHooks, PushKeys
from shared.records import CORRELATION_DISPLAY

logger = logging.getLogger(__name__)

HOOK_PATH = "/api/servicenow/hooks/"
TABLES: tuple[PushTable, ...] = ("incident", "change_request")
INSTRUCTIONS = (
    "In ServiceNow, as an admin: 1. Create the system property {property} (type string, Private "
    "checked, Read roles: admin) and paste the key of the last rotate as its value. 2. Create each Business "
    "Rule below (System Definition > Business Rules, Advanced): its table, When: async, Insert and "
    "Update checked, the condition and the script as given. A push is a hint: tickets are still "
    "synced by the poll, so a call ServiceNow loses changes nothing. Rotating makes a new hook URL "
    "and key: update the property and both scripts; the old ones stop working within 30 seconds."
)
SCRIPT = """(function executeRule(current, previous /*null when async*/) {
    var key = gs.getProperty('%(property)s');
    if (!key) {
        return;
    }
    var body = JSON.stringify({
        table: current.getTableName(),
        sys_id: current.getUniqueValue(),
        sys_mod_count: parseInt(current.getValue('sys_mod_count'), 10),
        sys_updated_on: current.getValue('sys_updated_on')
    });
    var timestamp = String(Math.floor(new Date().getTime() / 1000));
    var signature = new CertificateEncryption().generateMac(key, 'HmacSHA256', timestamp + '.' + body);
    var request = new sn_ws.RESTMessageV2();
    request.setEndpoint(%(url)s);
    request.setHttpMethod('POST');
    request.setRequestHeader('Content-Type', 'application/json');
    request.setRequestHeader('%(timestamp_header)s', timestamp);
    request.setRequestHeader('%(signature_header)s', signature);
    request.setRequestBody(body);
    request.setHttpTimeout(10000);
    request.executeAsync();
})(current, previous);
"""


def public_base_url(callback_url: str) -> str:
    """The app's public origin (and any path before `/api/`), from the OAuth redirect URI, which
    an operator sets to this app's own callback."""
    parts = urlsplit(callback_url)
    path = parts.path.split("/api/", 1)[0].rstrip("/")
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def pushes_since(hourly: dict[str, int] | None, now: datetime) -> int:
    """The pushes of the last 24 hours: this hour's bucket and the 23 before it."""
    oldest = (now - timedelta(hours=23)).strftime("%Y%m%d%H")
    return sum(count for hour, count in (hourly or {}).items() if hour >= oldest)


class PushSetupService:
    def __init__(
        self,
        *,
        connections: ConnectionStore,
        hooks: PushHooks,
        keys: PushKeys,
        base_url: str,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._connections = connections
        self._hooks = hooks
        self._keys = keys
        self._base_url = base_url.rstrip("/")
        self._clock = clock

    async def setup(self, tenant_id: str) -> PushSetup:
        await self._require_connection(tenant_id)
        tenant = await self._hooks.tenant(tenant_id)
        hook_id = tenant.hook_id if tenant is not None else None
        return self._answer(tenant_id, hook_id, self._status_of(tenant))

    async def rotate(self, tenant_id: str) -> PushRotated:
        """A new hook id and key; the old ones stop working. The key is in this answer only."""
        await self._require_connection(tenant_id)
        version, key = await self._keys.new_key(tenant_id)
        hook_id = token_urlsafe(32)
        await self._hooks.replace_hook(tenant_id, hook_id, version)
        logger.info("Push hook and key rotated")
        setup = self._answer(tenant_id, hook_id, await self.status(tenant_id))
        return PushRotated(**setup.model_dump(), key=base64.b64encode(key).decode("ascii"))

    async def status(self, tenant_id: str) -> PushStatus:
        return self._status_of(await self._hooks.tenant(tenant_id))

    def _status_of(self, tenant: PushTenant | None) -> PushStatus:
        if tenant is None:
            return PushStatus()
        return PushStatus(
            enabled=tenant.hook_id is not None,
            last_push_at=tenant.last_push_at,
            pushes_last_24h=pushes_since(tenant.hourly, self._clock.now()),
        )

    async def remove(self, tenant_id: str) -> None:
        """Delete the hook mapping (first: the hook stops at once) and the key."""
        await self._hooks.delete_tenant(tenant_id)
        await self._keys.delete_tenant(tenant_id)

    def hook_url(self, hook_id: str) -> str:
        return f"{self._base_url}{HOOK_PATH}{hook_id}"

    def _answer(self, tenant_id: str, hook_id: str | None, status: PushStatus) -> PushSetup:
        url = self.hook_url(hook_id) if hook_id else None
        rules = [business_rule(tenant_id, table, url) for table in TABLES] if url else []
        return PushSetup(
            enabled=hook_id is not None,
            hook_url=url,
            key_property=key_property(tenant_id),
            business_rules=rules,
            instructions=INSTRUCTIONS.format(property=key_property(tenant_id)),
            status=status,
        )

    async def _require_connection(self, tenant_id: str) -> None:
        if await self._connections.get(tenant_id) is None:
            raise ConnectionNotReady("Configure the ServiceNow instance first (PUT /api/provisioning).")


def business_rule(tenant_id: str, table: PushTable, url: str) -> BusinessRule:
    """The rule of one table for one tenant: its own name and key property, so tenants sharing an
    instance each have theirs (each hook then hears of the others' records too, and drops them)."""
    script = SCRIPT % {
        "property": key_property(tenant_id),
        "url": json.dumps(url),
        "timestamp_header": TIMESTAMP_HEADER,
        "signature_header": SIGNATURE_HEADER,
    }
    return BusinessRule(
        name=f"Microsoft 365 Security Connector push ({table}, {tenant_suffix(tenant_id)})",
        table=table,
        condition=f"current.correlation_display == {json.dumps(CORRELATION_DISPLAY)}",
        script=script,
    )
