import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from shared.errors import Misconfigured
from shared.settings import Settings, get_settings, settings_problems


def test_settings_are_read_from_the_environment_once(app_env: pytest.MonkeyPatch) -> None:
    app_env.setenv("PORTAL_URL", "https://portal.example/")
    first = get_settings()
    app_env.setenv("PORTAL_URL", "https://elsewhere.example/")
    assert get_settings() is first
    assert str(first.portal_url) == "https://portal.example/"
    assert first.local_dev is True
    assert first.principal_header_trusted is True


def test_easy_auth_flag_alone_trusts_the_principal(app_env: pytest.MonkeyPatch) -> None:
    app_env.delenv("LOCAL_DEV")
    app_env.setenv("WEBSITE_AUTH_ENABLED", "True")
    assert get_settings().principal_header_trusted is True


def test_neither_flag_means_the_principal_is_not_trusted(app_env: pytest.MonkeyPatch) -> None:
    app_env.delenv("LOCAL_DEV")
    assert get_settings().principal_header_trusted is False


def test_identity_based_storage_is_accepted(app_env: pytest.MonkeyPatch) -> None:
    app_env.delenv("DataStorage")
    app_env.setenv("DataStorage__tableServiceUri", "https://acct.table.core.windows.net")
    app_env.setenv("DataStorage__queueServiceUri", "https://acct.queue.core.windows.net")
    assert get_settings().data_storage_table_service_uri == "https://acct.table.core.windows.net"


@pytest.mark.parametrize(
    ("remove", "set_", "message"),
    [
        ("DataStorage", {}, "DataStorage: not configured"),
        ("KEY_VAULT_URL", {}, "KEY_VAULT_URL"),
        (None, {"SERVICENOW_URL_TEMPLATE": "https://example.com"}, "{instance}"),
        (None, {"PORTAL_URL": "not a url"}, "PORTAL_URL"),
        (None, {"REMEDIATION_GRACE_DAYS": "0"}, "REMEDIATION_GRACE_DAYS"),
        (None, {"REMEDIATION_GRACE_DAYS": "a week"}, "REMEDIATION_GRACE_DAYS"),
    ],
)
def test_missing_or_bad_settings_fail_with_a_clear_message(
    app_env: pytest.MonkeyPatch, remove: str | None, set_: dict[str, str], message: str
) -> None:
    if remove:
        app_env.delenv(remove)
    for key, value in set_.items():
        app_env.setenv(key, value)
    with pytest.raises(ValidationError, match=message.replace("{", r"\{").replace("}", r"\}")):
        Settings()


def test_misconfiguration_names_each_setting_and_rule_but_no_value(app_env: pytest.MonkeyPatch) -> None:
    app_env.setenv("SERVICENOW_URL_TEMPLATE", "https://sn-secret-looking-value.example.com")
    app_env.setenv("PORTAL_URL", "not-a-url-but-a-secret-0123456789")
    app_env.delenv("KEY_VAULT_URL")
    with pytest.raises(Misconfigured) as raised:
        get_settings()
    problems = raised.value.problems
    assert sorted(p.split(":")[0] for p in problems) == [
        "KEY_VAULT_URL",
        "PORTAL_URL",
        "SERVICENOW_URL_TEMPLATE",
    ]
    assert "SERVICENOW_URL_TEMPLATE: must contain {instance}" in problems
    text = raised.value.message + " ".join(problems)
    assert "secret" not in text
    assert settings_problems() == problems


def test_a_fixed_setting_is_read_again_after_a_failure(app_env: pytest.MonkeyPatch) -> None:
    app_env.setenv("SERVICENOW_URL_TEMPLATE", "https://nowhere.example.com")
    with pytest.raises(Misconfigured):
        get_settings()
    app_env.setenv("SERVICENOW_URL_TEMPLATE", "https://{instance}.service-now.com")
    assert get_settings().servicenow_url_template == "https://{instance}.service-now.com"
    assert settings_problems() == []


@pytest.mark.parametrize(
    ("name", "value", "rule"),
    [
        ("SERVICENOW_URL_TEMPLATE", "https://{instance}.service-now.com/{x}", "no other {...} placeholder"),
        ("SERVICENOW_URL_TEMPLATE", "https://{instance}.service-now.com/{", "no other {...} placeholder"),
        ("SERVICENOW_URL_TEMPLATE", "x{instance}y", "http(s) URL with a host"),
        ("SERVICENOW_URL_TEMPLATE", "https://{instance}.service-now.com:99999", "http(s) URL with a host"),
        ("DataStorage", "garbage", "Storage connection string"),
        ("DataStorage__tableServiceUri", "no-scheme.example.net", "https URL"),
    ],
)
def test_settings_that_would_fail_later_fail_at_start(
    app_env: pytest.MonkeyPatch, name: str, value: str, rule: str
) -> None:
    app_env.setenv(name, value)
    app_env.setenv("DataStorage__queueServiceUri", "https://acct.queue.core.windows.net")
    problems = settings_problems()
    assert [p for p in problems if p.startswith(f"{name}:")], problems
    assert any(rule in p for p in problems), problems
    assert not any(value in p for p in problems)


def test_the_sample_settings_are_valid() -> None:
    sample = json.loads((Path(__file__).resolve().parents[2] / "local.settings.sample.json").read_text())
    values = {k: v for k, v in sample["Values"].items() if isinstance(v, str)}
    assert Settings.model_validate(values).data_storage == "UseDevelopmentStorage=true"


def test_the_remediation_grace_is_read_from_the_environment(app_env: pytest.MonkeyPatch) -> None:
    assert Settings().remediation_grace_days == 7
    app_env.setenv("REMEDIATION_GRACE_DAYS", "2.5")
    assert Settings().remediation_grace_days == 2.5
