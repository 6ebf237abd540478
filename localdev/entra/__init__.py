"""Entra + Graph stand-in: `python -m localdev.entra` or `start_entra()` in-process."""

from localdev.entra.server import EntraHandle, EntraState, build_app, start_entra

__all__ = ["EntraHandle", "EntraState", "build_app", "start_entra"]
