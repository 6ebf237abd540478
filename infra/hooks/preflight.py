"""Check the azd environment before `azd provision` (azure.yaml, `preprovision` hook).

Bicep cannot match a pattern, so a value of the wrong form would deploy and fail later, or at
deployment time with an error about an expression rather than about the setting: a PORTAL_URL
without `https://` breaks the CORS origin the template derives from it. This names each bad
setting and what it must look like, and exits 1 so that azd stops before touching Azure.

Standard library only: it runs wherever azd runs, before any virtual environment exists. It prints
names and rules, never values (GRAPH_CLIENT_SECRET is read by nobody here).
"""

from __future__ import annotations

import os
import re
import sys
import uuid
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

Rule = Callable[[str], str | None]  # the value -> None when fine, else what it must be


def _guid(value: str) -> str | None:
    try:
        uuid.UUID(value)
    except ValueError:
        return "must be a GUID (an Entra client or tenant id)"
    return None


def _https_url(value: str) -> str | None:
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname:
        return "must be an https:// URL with a host, e.g. https://portal.example.com/"
    if parts.username or parts.password or parts.query or parts.fragment:
        return "must not carry credentials, a query or a fragment"
    return None


def _graph_client_id(value: str) -> str | None:
    if value == "none":
        return None
    return None if _guid(value) is None else "must be a GUID, or `none` to deploy without Microsoft Graph"


def _one_of(*allowed: str) -> Rule:
    def rule(value: str) -> str | None:
        return None if value in allowed else f"must be one of {', '.join(allowed)}"

    return rule


def _email(value: str) -> str | None:
    return None if re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", value) else "must be an email address"


def _optional(rule: Rule) -> Rule:
    return lambda value: None if value == "" else rule(value)


# Setting -> (required, rule). Optional ones are checked only when set.
RULES: dict[str, tuple[bool, Rule]] = {
    "AUTH_CLIENT_ID": (True, _guid),
    "PORTAL_URL": (True, _https_url),
    "GRAPH_CLIENT_ID": (True, _graph_client_id),
    "PORTAL_CLIENT_ID": (False, _guid),
    "OPERATOR_TENANT_ID": (False, _guid),
    "AUTH_OPENID_ISSUER": (False, _https_url),
    "AUTH_UNAUTHENTICATED_ACTION": (False, _one_of("Return401", "RedirectToLoginPage")),
    "AZURE_PRINCIPAL_TYPE": (False, _one_of("User", "ServicePrincipal", "Group")),
    "ALERT_EMAIL": (False, _email),
}


def problems(env: Mapping[str, str]) -> list[str]:
    """What is wrong with the environment, one line per setting; empty when all is well."""
    found: list[str] = []
    for name, (required, rule) in RULES.items():
        value = env.get(name, "").strip()
        if not value:
            if required:
                found.append(f"{name} is not set (azd env set {name} ...)")
            continue
        verdict = (rule if required else _optional(rule))(value)
        if verdict:
            found.append(f"{name} {verdict}")
    return found


def main(env: Mapping[str, str] | None = None) -> int:
    found = problems(os.environ if env is None else env)
    for line in found:
        print(f"preflight: {line}", file=sys.stderr)
    if found:
        print(
            "preflight: fix the settings above (infra/README.md, 'The command'), then run azd again.",
            file=sys.stderr,
        )
        return 1
    print("preflight: the azd environment is complete.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
