"""Our own policies over the Bicep in infra/ (see policies.py for what each one demands)."""

from __future__ import annotations

import pytest

from .policies import POLICIES, Infra


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_policy_holds(infra: Infra, name: str) -> None:
    assert POLICIES[name](infra) == []


def test_every_bicep_file_is_understood(infra: Infra) -> None:
    # parse_dir raises on syntax it does not understand; also make sure modules are all there.
    main = infra.files["main.bicep"]
    for module in main.modules.values():
        assert module.path in infra.files, f"main.bicep references missing module {module.path}"


def test_main_outputs_callback_url_and_app_host(infra: Infra) -> None:
    main = infra.files["main.bicep"]
    assert {"SERVICENOW_OAUTH_CALLBACK_URL", "AZURE_FUNCTION_APP_NAME", "AZURE_FUNCTION_APP_HOST"} <= set(
        main.outputs
    )
    function = infra.files["app/function.bicep"]
    assert (
        function.outputs["oauthCallbackUrl"]
        == "https://${site.properties.defaultHostName}/api/oauth/callback"
    )
