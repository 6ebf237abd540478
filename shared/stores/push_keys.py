"""Each tenant's push signing key in Key Vault: `snow-<tenant>-push-key`, 32 random bytes kept
Base64-encoded (as ServiceNow's `CertificateEncryption.generateMac` takes it).

Built on the secret store's client and its write, delete-and-purge and error mapping
(`secrets.py`), so a push key is written, soft-delete-recovered, purged and reported like every
other secret. A hook row names the key version that signs for it; a version's value never
changes, so each is cached in this process for good (bounded) and Key Vault sees one read per
version and process. Every key is registered with the log redactor as soon as it is made or read.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections import OrderedDict

from azure.core.exceptions import AzureError, ResourceNotFoundError

from shared.errors import Conflict
from shared.observability import register_secret
from shared.settings import Settings
from shared.stores.secrets import KeyVaultSecretStore, _checked_tenant, _mapped

KEY_BYTES = 32
_MAX_CACHED = 10_000


def push_key_name(tenant_id: str) -> str:
    return f"snow-{_checked_tenant(tenant_id)}-push-key"


class KeyVaultPushKeys:
    """`shared.push_ports.PushKeys` on Key Vault, through a `KeyVaultSecretStore` it owns."""

    def __init__(self, store: KeyVaultSecretStore) -> None:
        self._store = store
        self._values: OrderedDict[tuple[str, str], bytes] = OrderedDict()

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyVaultPushKeys:
        """On a secret store of its own: its client closes with it, and its cache holds no push key."""
        return cls(KeyVaultSecretStore.from_settings(settings))

    async def new_key(self, tenant_id: str) -> tuple[str, bytes]:
        key = secrets.token_bytes(KEY_BYTES)
        encoded = base64.b64encode(key).decode("ascii")
        register_secret(encoded, tenant_id=tenant_id)
        name = push_key_name(tenant_id)
        await self._store._write(name, encoded, "text/plain", tenant_id)
        try:
            secret = await self._store._client.get_secret(name)
        except AzureError as exc:
            raise _mapped(exc, "read the push key from") from exc
        version = secret.properties.version
        if not version or secret.value != encoded:
            # Another rotate of this tenant wrote after us: its key is the latest, ours is void.
            raise Conflict("Another rotate of the push key ran at the same time. Rotate again.")
        self._remember(tenant_id, version, key)
        return version, key

    async def key(self, tenant_id: str, version: str) -> bytes | None:
        cached = self._values.get((tenant_id, version))
        if cached is not None:
            return cached
        try:
            secret = await self._store._client.get_secret(push_key_name(tenant_id), version)
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise _mapped(exc, "read the push key from") from exc
        if secret.value is None:
            return None
        register_secret(secret.value, tenant_id=tenant_id)
        try:
            key = base64.b64decode(secret.value, validate=True)
        except (binascii.Error, ValueError):
            return None
        self._remember(tenant_id, version, key)
        return key

    async def delete_tenant(self, tenant_id: str) -> None:
        for cached in [k for k in self._values if k[0] == tenant_id]:
            del self._values[cached]
        await self._store._delete_and_purge(push_key_name(tenant_id))

    async def aclose(self) -> None:
        await self._store.aclose()

    def _remember(self, tenant_id: str, version: str, key: bytes) -> None:
        self._values[(tenant_id, version)] = key
        while len(self._values) > _MAX_CACHED:
            self._values.popitem(last=False)
