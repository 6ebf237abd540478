"""ServiceNow's Table API for one tenant's instance: create, read, query with `Link` paging,
single pages for callers that page by keyset (the sync), and work notes and comments.

Reads are retried (429/5xx/timeouts, honouring Retry-After). A create is sent once: whether a
failed create may be repeated depends on finding the record it may have made, which is the
ticketing service's business (it looks the ticket up by `correlation_id`). A work note is sent
again only when ServiceNow certainly did not carry it out (`write_once`). A 401 means the access
token is no longer accepted: the token is refreshed once and the request replayed once, which is
safe because ServiceNow did not process a request it refused to authenticate.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Literal
from urllib.parse import quote, urlsplit

import httpx

from shared.clock import SYSTEM_CLOCK, Clock
from shared.errors import NotFound, TokenRefused, UpstreamError, UpstreamUnavailable
from shared.note_models import JournalDisplay, JournalField
from shared.ports import AccessTokenSource, ProbeAnswer
from shared.records import Connection
from shared.servicenow.answers import Record, probe_answer, rejected, result_of, results_of
from shared.servicenow.transport import RetryPolicy, send_with_retries
from shared.servicenow.write_once import send_unless_processed

logger = logging.getLogger(__name__)

MAX_PAGE_SIZE = 1000
_MAX_PAGES = 10_000
# True: retried like a read; False: sent once; "unprocessed": again only when certainly not carried out.
Resend = bool | Literal["unprocessed"]


class ServiceNowTables:
    def __init__(
        self,
        http: httpx.AsyncClient,
        tokens: AccessTokenSource,
        *,
        retry: RetryPolicy | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._http = http
        self._tokens = tokens
        self._retry = retry or RetryPolicy()
        self._clock = clock  # waits between retries

    async def create(
        self,
        connection: Connection,
        table: str,
        fields: dict[str, str],
        *,
        before_post: Callable[[], Awaitable[None]] | None = None,
    ) -> Record:
        """POST one record; sent once (see the module docstring).

        `before_post` runs immediately before each POST leaves, once the access token is at hand
        (also before the replay after a 401): a slow token refresh happens before it, not between
        it and the POST. Whatever it raises propagates and nothing is sent.

        Raises:
            UpstreamRejected: ServiceNow refused the record (its message included).
            UpstreamUnavailable: no answer, or a 429/5xx; `ambiguous` says whether the record may
                exist (or still come to exist) all the same.
        """
        url = _table_url(connection, table)
        response = await self._send(
            connection, "POST", url, what=f"create {table}", retry=False, before=before_post, json=fields
        )
        if response.status_code == 201:
            return result_of(response)
        if 400 <= response.status_code < 500 and response.status_code not in (408, 429):
            raise rejected(response, f"create a {table} record")
        # Any other answer (another 2xx, a redirect, a proxy's 408) does not say no record was made.
        raise UpstreamUnavailable(
            f"ServiceNow answered the create with HTTP {response.status_code}.", retry_after=5, ambiguous=True
        )

    async def add_work_note(self, connection: Connection, table: str, sys_id: str, text: str) -> None:
        """PATCH `{"work_notes": text}` onto the record (`add_journal_entry`)."""
        await self.add_journal_entry(connection, table, sys_id, "work_notes", text)

    async def add_journal_entry(
        self, connection: Connection, table: str, sys_id: str, field: JournalField, text: str
    ) -> None:
        """PATCH `{field: text}` onto the record: ServiceNow appends a journal entry.

        Raises:
            NotFound: no such record (or an ACL hides it).
            UpstreamRejected: ServiceNow refused the note (its message included).
            UpstreamUnavailable: no answer, or a 429/5xx; `ambiguous` says whether the note may
                have been added all the same (then it was not sent again).
        """
        what = "a work note" if field == "work_notes" else "a comment"
        url = f"{_table_url(connection, table)}/{quote(sys_id, safe='')}"
        response = await self._send(
            connection, "PATCH", url, what=f"add {what} to {table}", retry="unprocessed",
            params={"sysparm_fields": "sys_id"}, json={field: text},
        )  # fmt: skip
        if response.status_code == 200:
            return
        if response.status_code == 404:
            raise NotFound(f"ServiceNow has no {table} record {sys_id} to add {what} to.")
        if 400 <= response.status_code < 500 and response.status_code not in (408, 429):
            raise rejected(response, f"add {what} to a {table} record")
        # Another 2xx, a redirect or a proxy's 408 does not say the note was not added.
        raise UpstreamUnavailable(
            f"ServiceNow answered {what} with HTTP {response.status_code}.",
            retry_after=5,
            ambiguous=True,
        )

    async def journal_display_values(
        self, connection: Connection, table: str, sys_id: str
    ) -> JournalDisplay | None:
        """The record's `work_notes` and `comments` as display values (entries concatenated, in the
        integration user's time zone) and its `sys_updated_on` both ways; None: no such record."""
        url = f"{_table_url(connection, table)}/{quote(sys_id, safe='')}"
        params = {"sysparm_fields": "work_notes,comments,sys_updated_on", "sysparm_display_value": "all"}
        response = await self._send(connection, "GET", url, what=f"read {table} notes", params=params)
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise rejected(response, f"read the notes of a {table} record")
        record = result_of(response)
        updated = _both(record.get("sys_updated_on"))
        return JournalDisplay(
            work_notes=_both(record.get("work_notes"))[0],
            comments=_both(record.get("comments"))[0],
            updated_display=updated[0],
            updated_value=updated[1],
        )

    async def find_one(
        self, connection: Connection, table: str, query: str, fields: list[str]
    ) -> Record | None:
        async for page in self.query(connection, table, query, fields, page_size=1):
            return page[0] if page else None
        return None

    async def query(
        self,
        connection: Connection,
        table: str,
        query: str,
        fields: list[str],
        *,
        page_size: int = MAX_PAGE_SIZE,
    ) -> AsyncIterator[list[Record]]:
        """The matching records, a page at a time, following the `Link: rel="next"` header.

        `query` should end in an ORDERBY: without a stable order, pages can repeat or skip rows.
        """
        params: dict[str, str] | None = {
            "sysparm_query": query,
            "sysparm_fields": ",".join(fields),
            "sysparm_limit": str(min(page_size, MAX_PAGE_SIZE)),
            "sysparm_offset": "0",
            "sysparm_exclude_reference_link": "true",
        }
        url = _table_url(connection, table)
        for _ in range(_MAX_PAGES):
            response = await self._send(connection, "GET", url, what=f"query {table}", params=params)
            if response.status_code == 404:
                return  # v1 answers an empty result with 404
            if response.status_code != 200:
                raise rejected(response, f"query {table}")
            records = results_of(response)
            if records:
                yield records
            next_url = response.links.get("next", {}).get("url")
            if not records or not next_url:
                return
            url, params = _same_instance(connection, next_url), None
        raise UpstreamError(f"ServiceNow kept paging {table} past {_MAX_PAGES} pages.")

    async def page(
        self, connection: Connection, table: str, query: str, fields: list[str], *, limit: int = MAX_PAGE_SIZE
    ) -> list[Record]:
        """The first `limit` (at most 1,000) matching records: one request, no `Link` followed.

        For keyset paging, where the caller words each next page's `query` from the last one (an
        offset shifts when a record moves while the pages are read). `query` should end in an
        ORDERBY. No count is asked for (`sysparm_no_count`): it costs the instance a second query.
        """
        params = {
            "sysparm_query": query,
            "sysparm_fields": ",".join(fields),
            "sysparm_limit": str(max(1, min(limit, MAX_PAGE_SIZE))),
            "sysparm_exclude_reference_link": "true",
            "sysparm_no_count": "true",
        }
        url = _table_url(connection, table)
        response = await self._send(connection, "GET", url, what=f"query {table}", params=params)
        if response.status_code == 404:
            return []  # v1 answers an empty result with 404
        if response.status_code != 200:
            raise rejected(response, f"query {table}")
        return results_of(response)

    async def reach(self, connection: Connection) -> ProbeAnswer:
        """One unauthenticated GET, sent once (the instance answers 401): is anybody there?"""
        url = _table_url(connection, "sys_choice")
        response = await send_with_retries(
            lambda: self._http.get(url, params={"sysparm_limit": "1"}),
            self._retry,
            what="reach the instance",
            retry=False,
            clock=self._clock,
        )
        return probe_answer(response, count=False)

    async def read_one(self, connection: Connection, table: str) -> ProbeAnswer:
        """GET at most one record (`sysparm_limit=1`), signed in; the answer whatever its status."""
        params = {
            "sysparm_limit": "1",
            "sysparm_fields": "sys_id",
            "sysparm_no_count": "true",
            "sysparm_exclude_reference_link": "true",
        }
        url = _table_url(connection, table)
        response = await self._send(connection, "GET", url, what=f"probe {table}", params=params)
        return probe_answer(response, count=True)

    async def _send(
        self,
        connection: Connection,
        method: str,
        url: str,
        *,
        what: str,
        retry: Resend = True,
        before: Callable[[], Awaitable[None]] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        token = await self._tokens.access_token(connection)
        if before is not None:
            await before()
        response = await self._attempt(method, url, token.get_secret_value(), what, retry, kwargs)
        if response.status_code != 401:
            return response
        logger.info("ServiceNow refused the access token (%s); refreshing it once", what)
        token = await self._tokens.after_rejection(connection, token)
        if before is not None:
            await before()
        response = await self._attempt(method, url, token.get_secret_value(), what, retry, kwargs)
        if response.status_code == 401:
            raise TokenRefused(f"ServiceNow refused a freshly refreshed access token ({what}).")
        return response

    async def _attempt(
        self, method: str, url: str, token: str, what: str, retry: Resend, kwargs: dict[str, Any]
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}

        def send() -> Awaitable[httpx.Response]:
            return self._http.request(method, url, headers=headers, **kwargs)

        if retry == "unprocessed":
            return await send_unless_processed(send, self._retry, what=what, clock=self._clock)
        return await send_with_retries(send, self._retry, what=what, retry=retry, clock=self._clock)


def _table_url(connection: Connection, table: str) -> str:
    return f"{connection.instance_url.rstrip('/')}/api/now/table/{table}"


def _same_instance(connection: Connection, url: str) -> str:
    """A Link URL is followed only on the instance we called: our bearer token goes nowhere else."""
    ours, theirs = urlsplit(connection.instance_url), urlsplit(url)
    if (theirs.scheme, theirs.netloc) != (ours.scheme, ours.netloc):
        raise UpstreamError("ServiceNow's paging link points at another host; not following it.")
    return url


def _both(field: Any) -> tuple[str, str]:
    """A field read with `sysparm_display_value=all`: (display value, value)."""
    if isinstance(field, dict):
        return str(field.get("display_value") or ""), str(field.get("value") or "")
    return str(field or ""), str(field or "")
