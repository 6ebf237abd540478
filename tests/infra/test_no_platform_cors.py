"""CORS lives in the app (functions/_cors.py), not in the platform: the policy that keeps it so
holds on infra/ and fails on a copy that sets a platform list either way Azure accepts one."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .policies import Infra, no_platform_cors

Mutate = Callable[[str, str, str], Path]
ANCHOR = "      http20Enabled: true\n"


def test_the_templates_set_no_platform_cors(infra: Infra) -> None:
    assert no_platform_cors(infra) == []


def test_policy_fails_when_site_config_sets_cors(mutate: Mutate) -> None:
    broken = mutate(
        "app/function.bicep",
        ANCHOR,
        ANCHOR + "      cors: {\n        allowedOrigins: [\n          portalOrigin\n        ]\n      }\n",
    )
    [violation] = no_platform_cors(Infra.load(broken))
    assert "siteConfig.cors" in violation


def test_policy_fails_when_the_web_config_sets_cors(mutate: Mutate) -> None:
    web = (
        "resource webConfig 'Microsoft.Web/sites/config@2024-04-01' = {\n"
        "  parent: site\n"
        "  name: 'web'\n"
        "  properties: {\n"
        "    cors: {\n"
        "      allowedOrigins: [\n"
        "        '*'\n"
        "      ]\n"
        "    }\n"
        "  }\n"
        "}\n\n"
    )
    anchor = "resource ftpCredentials "
    broken = mutate("app/function.bicep", anchor, web + anchor)
    [violation] = no_platform_cors(Infra.load(broken))
    assert "webConfig" in violation
