"""How a stored record goes onto the wire, per ``sysparm_fields``/``display_value``/reference links.

Stored values are the raw strings; references are stored as the target's sys_id. On output a
reference becomes ``{"link", "value"}`` by default, a plain string with
``sysparm_exclude_reference_link=true``, and carries a ``display_value`` when display values are
asked for (facts L110). Journal fields read back as "" (facts L113) because they are never stored;
their display value is the record's entries, newest first, each
``YYYY-MM-DD HH:MM:SS - Full Name (Work notes)\n<text>\n\n`` (next-features facts A7).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .schema import TableSchema

DisplayMode = Literal["false", "true", "all"]
# (table, sys_id) -> the referenced record's display value
ReferenceNamer = Callable[[str, str], str]
# (table, sys_id, journal field) -> the field's display value
JournalReader = Callable[[str, str, str], str]


@dataclass(frozen=True)
class RenderOptions:
    base_url: str
    fields: Sequence[str] | None = None
    display: DisplayMode = "false"
    exclude_reference_link: bool = False


def parse_display_mode(raw: str | None) -> DisplayMode:
    value = (raw or "false").lower()
    if value == "true":
        return "true"
    if value == "all":
        return "all"
    return "false"


def selected_fields(schema: TableSchema, raw: str | None) -> list[str] | None:
    """``sysparm_fields`` with unknown names dropped (facts L82); None means every field."""
    if not raw:
        return None
    return [name for name in (part.strip() for part in raw.split(",")) if schema.has_field(name)]


def render(
    schema: TableSchema,
    record: Mapping[str, str],
    options: RenderOptions,
    namer: ReferenceNamer,
    journal: JournalReader | None = None,
) -> dict[str, Any]:
    names = options.fields if options.fields is not None else list(schema.defaults)
    rendered = {name: _render_field(schema, name, record.get(name, ""), options, namer) for name in names}
    if options.display != "false" and journal is not None:
        for name in schema.write_only.intersection(names):
            text = journal(schema.name, record.get("sys_id", ""), name)
            rendered[name] = text if options.display == "true" else {"display_value": text, "value": ""}
    return rendered


def _render_field(
    schema: TableSchema, name: str, value: str, options: RenderOptions, namer: ReferenceNamer
) -> Any:
    target = schema.references.get(name)
    if target is not None:
        return _render_reference(target, value, options, namer)
    if options.display == "false":
        return value
    display = schema.choices.get(name, {}).get(value, value)
    if options.display == "true":
        return display
    rendered: dict[str, str] = {"display_value": display, "value": value}
    if name in schema.datetimes:
        rendered["display_value_internal"] = value  # the simulated user's time zone is UTC
    return rendered


def _render_reference(target: str, value: str, options: RenderOptions, namer: ReferenceNamer) -> Any:
    if value == "":
        return "" if options.display != "all" else {"display_value": "", "value": ""}
    link = f"{options.base_url}/api/now/table/{target}/{value}"
    if options.display == "false":
        return value if options.exclude_reference_link else {"link": link, "value": value}
    display = namer(target, value)
    if options.display == "true":
        return display if options.exclude_reference_link else {"display_value": display, "link": link}
    rendered = {"display_value": display, "value": value}
    if not options.exclude_reference_link:
        rendered["link"] = link
    return rendered
