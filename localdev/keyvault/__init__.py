"""Key Vault secrets stand-in: `python -m localdev.keyvault` or `start_keyvault()` in-process."""

from localdev.keyvault.server import KeyVaultHandle, KeyVaultState, build_app, start_keyvault

__all__ = ["KeyVaultHandle", "KeyVaultState", "build_app", "start_keyvault"]
