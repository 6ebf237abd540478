"""Watermarks and seen-sets of the sync: how far each ServiceNow table has been read, in
ServiceNow's own date format, and which records of the look-back window were already handled.

Pure functions over strings and tuples (the policy: `syncing.py`; the paging: `sync_pull.py`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

GLIDE_FORMAT = "%Y-%m-%d %H:%M:%S"
SEEN_SUFFIX = "@seen"
# How many records of the look-back window below the watermark are remembered (newest first), as
# `sys_id=state@seconds-below-the-watermark` (about 45 characters each; the Watermarks property,
# both tables together, must stay well under Table Storage's 32K characters). Records past this
# (a bulk update) are compared with our rows again next run: a read of the partition, never a
# missed or a repeated write.
SEEN_LIMIT = 200

Record = dict[str, Any]
Version = tuple[str, str]  # (sys_updated_on, state) of a record as we saw it


def parse_glide(value: str) -> datetime | None:
    try:
        return datetime.strptime(value, GLIDE_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None


def format_glide(value: datetime) -> str:
    return value.strftime(GLIDE_FORMAT)


def seconds_before(mark: str, delta: timedelta) -> str:
    """The Glide date-time `delta` before `mark` (`mark` itself if it is not one)."""
    parsed = parse_glide(mark)
    return mark if parsed is None else format_glide(parsed - delta)


def record_sys_id(record: Record) -> str:
    return str(record.get("sys_id", ""))


def record_updated(record: Record) -> str:
    return str(record.get("sys_updated_on", ""))


def record_version(record: Record) -> Version:
    return record_updated(record), str(record.get("state", ""))


def seen_window(observed: dict[str, Version], newest: str, look_back: timedelta) -> dict[str, Version]:
    """The records seen in the look-back window below `newest`, the newest `SEEN_LIMIT` of them."""
    floor = seconds_before(newest, look_back)
    inside = [(sys_id, version) for sys_id, version in observed.items() if floor <= version[0] <= newest]
    inside.sort(key=lambda item: (item[1][0], item[0]), reverse=True)
    return dict(inside[:SEEN_LIMIT])


def parse_seen(value: str | None, mark: str) -> dict[str, Version]:
    """`sys_id=state` (at the watermark's second) or `sys_id=state@N` (N seconds below it)."""
    if not value:
        return {}
    base = parse_glide(mark)
    seen: dict[str, Version] = {}
    for item in value.split(","):
        sys_id, _, rest = item.partition("=")
        state, at, ago = rest.partition("@")
        if not sys_id:
            continue
        if not at:
            seen[sys_id] = (mark, state)
        elif base is not None and ago.isdigit():
            seen[sys_id] = (format_glide(base - timedelta(seconds=int(ago))), state)
    return seen


def format_seen(seen: dict[str, Version], mark: str) -> str:
    base = parse_glide(mark)
    items: list[str] = []
    for sys_id, (updated, state) in sorted(seen.items()):
        if updated == mark:
            items.append(f"{sys_id}={state}")
            continue
        at = parse_glide(updated)
        if base is not None and at is not None and at <= base:
            items.append(f"{sys_id}={state}@{int((base - at).total_seconds())}")
    return ",".join(items)


def merge_watermarks(current: dict[str, str], marks: dict[str, str], table: str) -> dict[str, str]:
    """The stored watermarks with `table`'s moved forward, never back.

    Two workers could both finish (a lease that expired under a very slow run): the later
    watermark wins, and the seen-set goes with the watermark it belongs to (at the same watermark
    the two sets are joined, the newest `SEEN_LIMIT` kept).
    """
    merged = dict(current)
    new = marks.get(table)
    if new is None:
        return merged
    old = merged.get(table, "")
    seen_key = table + SEEN_SUFFIX
    if new > old:
        merged[table] = new
        if seen_key in marks:
            merged[seen_key] = marks[seen_key]
        else:
            merged.pop(seen_key, None)
    elif new == old:
        if seen_key in marks:
            both = parse_seen(merged.get(seen_key), new)
            for sys_id, version in parse_seen(marks[seen_key], new).items():
                if sys_id not in both or version[0] >= both[sys_id][0]:
                    both[sys_id] = version
            newest_first = sorted(both.items(), key=lambda item: (item[1][0], item[0]), reverse=True)
            merged[seen_key] = format_seen(dict(newest_first[:SEEN_LIMIT]), new)
        else:
            merged.pop(seen_key, None)
    return merged


def merge_tables(current: dict[str, str], marks: dict[str, dict[str, str]]) -> dict[str, str]:
    """`merge_watermarks` for each table's marks in `marks` (table -> its marks)."""
    merged = dict(current)
    for table, table_marks in marks.items():
        merged = merge_watermarks(merged, table_marks, table)
    return merged
