"""Storage ports and adapters: `secrets` (Key Vault) and the Table Storage repositories.

Import from the modules themselves (`from shared.stores.secrets import SecretStore`), so that
loading one store never pulls in the SDKs of the others.
"""
