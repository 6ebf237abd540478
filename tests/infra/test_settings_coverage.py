"""Every setting the app reads is set by the Bicep app settings or documented as optional."""

from __future__ import annotations

import json

from shared.settings import Settings

from .checkov_runner import INFRA_DIR
from .policies import Infra
from .settings_coverage import DOCUMENTED_OPTIONAL, coverage_violations, setting_names, wiring_violations


def test_settings_fields_are_known() -> None:
    # Guards the helper itself: it must see the aliases, not the Python field names.
    assert "KEY_VAULT_URL" in setting_names("key_vault_url")
    assert "DataStorage__tableServiceUri" in setting_names("data_storage_table_service_uri")
    assert len(Settings.model_fields) >= 10


def test_every_setting_is_set_or_documented(infra: Infra) -> None:
    assert coverage_violations(infra, INFRA_DIR / "README.md") == []


def test_settings_point_at_the_right_resources(infra: Infra) -> None:
    assert wiring_violations(infra) == []


def test_documented_optional_settings_have_reasons() -> None:
    assert all(len(reason) > 20 for reason in DOCUMENTED_OPTIONAL.values())


def test_parameters_file_matches_main_bicep(infra: Infra) -> None:
    main = infra.files["main.bicep"]
    parameters = json.loads((INFRA_DIR / "main.parameters.json").read_text(encoding="utf-8"))["parameters"]
    assert set(parameters) <= set(main.params), set(parameters) - set(main.params)
    without_default = {name for name, default in main.params.items() if default is None}
    assert without_default <= set(parameters), without_default - set(parameters)
    for name, env in {
        "environmentName": "${AZURE_ENV_NAME}",
        "location": "${AZURE_LOCATION}",
        "principalId": "${AZURE_PRINCIPAL_ID}",
    }.items():
        assert parameters[name]["value"] == env
