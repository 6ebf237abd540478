"""What an admin may type as the ServiceNow instance: three spellings of a name, nothing else
(outside a developer machine), and never a crash whatever the text."""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from shared.errors import BadRequest
from shared.instance_names import Instance, resolve_instance

TEMPLATE = "https://{instance}.service-now.com"
NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")

# Text shaped like what people paste: URL pieces, brackets, ports, and the odd control character.
URL_PIECES = st.sampled_from(
    [
        "https://",
        "http://",
        "contoso",
        ".service-now.com",
        ".evil.com",
        ":",
        "443",
        "99999",
        "-1",
        "abc",
        "[",
        "]",
        "::1",
        "@",
        "/",
        "?",
        "#",
        "%",
        " ",
        "\t",
        "\n",
        "\x00",
        "İ",
        "\u200b",
    ]
)
URL_LIKE = st.lists(URL_PIECES, max_size=12).map("".join)


def resolve(text: str, *, local_dev: bool = False) -> Instance:
    return resolve_instance(text, url_template=TEMPLATE, local_dev=local_dev)


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("contoso", "contoso"),
        ("  Contoso ", "contoso"),
        ("contoso.service-now.com", "contoso"),
        ("https://contoso.service-now.com", "contoso"),
        ("https://Contoso.service-now.com/", "contoso"),
    ],
)
def test_the_three_spellings_name_one_instance(text: str, name: str) -> None:
    assert resolve(text) == Instance(name, f"https://{name}.service-now.com")


BROKEN = [
    "https://x.service-now.com:abc",
    "https://x.service-now.com:99999",
    "https://x.service-now.com:-1",
    "https://[x.service-now.com",
    "http://[::1",
    "https://]x.service-now.com",
    "https://x.service-now.com/login.do",
    "https://user@x.service-now.com",
    "x.evil.com",
    "",
    "-contoso",
]
# Plain URLs: refused in Azure, accepted on a developer machine (for the simulator).
FOREIGN = ["https://x.service-now.com:443", "http://x.service-now.com", "https://x.service-now.com.evil.com"]


@pytest.mark.parametrize("text", BROKEN)
@pytest.mark.parametrize("local_dev", [False, True])
def test_malformed_instances_are_a_400_on_the_field(text: str, local_dev: bool) -> None:
    with pytest.raises(BadRequest) as refused:
        resolve(text, local_dev=local_dev)
    assert [field["field"] for field in refused.value.fields] == ["instance"]


@pytest.mark.parametrize("text", FOREIGN)
def test_other_hosts_are_a_400_outside_a_developer_machine(text: str) -> None:
    with pytest.raises(BadRequest):
        resolve(text)
    assert resolve(text, local_dev=True).url.startswith("http")


@pytest.mark.parametrize("text", ["http://127.0.0.1:abc", "http://127.0.0.1:70000", "http://[::1"])
def test_a_developer_machine_still_refuses_urls_with_a_broken_authority(text: str) -> None:
    with pytest.raises(BadRequest):
        resolve(text, local_dev=True)


def test_a_developer_machine_accepts_a_plain_url() -> None:
    assert resolve("http://127.0.0.1:8080/", local_dev=True) == Instance(
        "http://127.0.0.1:8080", "http://127.0.0.1:8080"
    )


@settings(max_examples=400, deadline=None, database=None)
@given(text=st.one_of(st.text(max_size=80), URL_LIKE), local_dev=st.booleans())
@example(text="https://x.service-now.com:abc", local_dev=False)
@example(text="https://[x.service-now.com", local_dev=True)
def test_any_text_is_an_instance_or_a_400_never_a_crash(text: str, local_dev: bool) -> None:
    outcome: Instance | BadRequest
    try:
        outcome = resolve(text, local_dev=local_dev)
    except BadRequest as refused:
        outcome = refused
    if isinstance(outcome, BadRequest):
        assert [field["field"] for field in outcome.fields] == ["instance"]
    elif not local_dev:
        # Outside a developer machine every accepted input is an instance name at the template:
        # nothing the admin types can point the app at another host.
        assert NAME.fullmatch(outcome.name), outcome
        assert outcome.url == TEMPLATE.format(instance=outcome.name)
