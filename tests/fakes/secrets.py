"""A dict-backed `SecretStore` for unit tests: same behaviour as Key Vault's, no I/O."""

from __future__ import annotations

from pydantic import SecretStr

from shared.errors import ConnectionNotReady, UpstreamError
from shared.observability import register_secret
from shared.ports import SecretStore
from shared.records import AppKey, TokenSet
from shared.stores.secrets import (
    app_key_name,
    client_secret_name,
    new_app_key,
    register_tokens,
    tokens_from_json,
    tokens_name,
    tokens_to_json,
)


class InMemorySecretStore:
    """Keeps values under the same names and in the same format as `KeyVaultSecretStore`.

    `values` (name -> stored string) and `deleted` (names removed by `delete_tenant`) are public so
    tests can assert on state.
    """

    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.deleted: list[str] = []
        self.soft_deleted: set[str] = set()  # like Key Vault under purge protection
        self.app_key_versions: dict[str, dict[str, str]] = {}
        self.closed = False

    async def get_client_secret(self, tenant_id: str, *, fresh: bool = False) -> SecretStr | None:
        value = self.values.get(client_secret_name(tenant_id))
        register_secret(value)
        return SecretStr(value) if value is not None else None

    async def set_client_secret(self, tenant_id: str, client_secret: SecretStr) -> None:
        register_secret(client_secret.get_secret_value())
        self.values[client_secret_name(tenant_id)] = client_secret.get_secret_value()

    async def get_tokens(self, tenant_id: str, *, fresh: bool = False) -> TokenSet | None:
        value = self.values.get(tokens_name(tenant_id))
        return tokens_from_json(value) if value is not None else None

    async def set_tokens(self, tenant_id: str, tokens: TokenSet, *, restore_deleted: bool = True) -> None:
        name = tokens_name(tenant_id)
        if name in self.soft_deleted and not restore_deleted:
            raise ConnectionNotReady("The ServiceNow connection was removed.")
        self.soft_deleted.discard(name)
        register_tokens(tokens)
        self.values[name] = tokens_to_json(tokens)

    async def delete_tenant(self, tenant_id: str) -> None:
        for name in (client_secret_name(tenant_id), tokens_name(tenant_id)):
            if self.values.pop(name, None) is not None:
                self.deleted.append(name)
                self.soft_deleted.add(name)

    async def app_key(self, name: str, version: str | None = None) -> AppKey:
        """Versions are "1", "2", ...; `values` holds the latest, `app_key_versions` all of them."""
        secret_name = app_key_name(name)
        versions = self.app_key_versions.setdefault(secret_name, {})
        if not versions:
            self.rotate_app_key(name)
        chosen = version or max(versions, key=int)
        if chosen not in versions:
            raise UpstreamError("Key Vault has no such version of the app key.")
        register_secret(versions[chosen])
        return AppKey(chosen, SecretStr(versions[chosen]))

    def rotate_app_key(self, name: str) -> None:
        """A new latest version, as a second instance creating the key at the same time would make."""
        secret_name = app_key_name(name)
        versions = self.app_key_versions.setdefault(secret_name, {})
        versions[str(len(versions) + 1)] = self.values[secret_name] = new_app_key()

    async def aclose(self) -> None:
        self.closed = True


def _conforms(store: InMemorySecretStore) -> SecretStore:
    return store  # mypy checks here that the fake implements the whole port
