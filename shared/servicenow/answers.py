"""Reading the Table API's answers: the `result` of a record or a list, ServiceNow's own words from
its error envelope, and what a probe GET got back.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from shared.errors import UpstreamError, UpstreamRejected
from shared.ports import ProbeAnswer

Record = dict[str, Any]
MESSAGE_LIMIT = 300


def result_of(response: httpx.Response) -> Record:
    try:
        result = response.json()["result"]
    except (ValueError, KeyError, TypeError) as exc:
        raise UpstreamError("ServiceNow answered without a result.") from exc
    if not isinstance(result, dict):
        raise UpstreamError("ServiceNow answered with an unexpected result.")
    return result


def results_of(response: httpx.Response) -> list[Record]:
    try:
        result = response.json()["result"]
    except (ValueError, KeyError, TypeError) as exc:
        raise UpstreamError("ServiceNow answered without a result.") from exc
    if not isinstance(result, list):
        raise UpstreamError("ServiceNow answered with an unexpected result.")
    return [record for record in result if isinstance(record, dict)]


def rejected(response: httpx.Response, action: str) -> UpstreamRejected:
    said = said_of(response)
    return UpstreamRejected(
        f"ServiceNow refused to {action} (HTTP {response.status_code}){': ' + said if said else ''}."
    )


def said_of(response: httpx.Response) -> str:
    """ServiceNow's own words from its `{"error": {"message", "detail"}}` envelope."""
    message = detail = ""
    try:
        error = response.json().get("error") or {}
        message, detail = str(error.get("message") or ""), str(error.get("detail") or "")
    except (ValueError, AttributeError):
        pass
    return ": ".join(part for part in (message, detail) if part and part != "null")[:MESSAGE_LIMIT]


def probe_answer(response: httpx.Response, *, count: bool) -> ProbeAnswer:
    """`count`: read the records of a 200 (UpstreamError when it has no result list)."""
    records = len(results_of(response)) if count and response.status_code == 200 else 0
    said = said_of(response) if response.status_code >= 400 else ""
    return ProbeAnswer(response.status_code, date_of(response), records, said)


def date_of(response: httpx.Response) -> datetime | None:
    """The answer's `Date` header (RFC 9110 IMF-fixdate, GMT): the instance's clock."""
    try:
        moment = parsedate_to_datetime(response.headers.get("date", ""))
    except (TypeError, ValueError, IndexError):
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
