"""Read-only probes of an instance (`InstanceProbe`) over canned answers, for the connection test.

`reach_answer` (or `reach_error`) is what the unauthenticated GET gets; `reads[table]` what a read
gets, a `ProbeAnswer` or an exception to raise. With `tokens`, a read first asks it for the access
token as the adapter does, and when `token_refused` is set it asks `after_rejection`, as the adapter
does after a 401 (so a dead grant raises what `AccessTokens` raises).
"""

from __future__ import annotations

from shared.clock import Clock
from shared.ports import AccessTokenSource, InstanceProbe, ProbeAnswer
from shared.records import Connection


class FakeInstanceProbe:
    def __init__(self, clock: Clock, tokens: AccessTokenSource | None = None) -> None:
        self.clock = clock
        self.tokens = tokens
        self.reach_answer: ProbeAnswer | None = None  # None: 401 dated by `clock`
        self.reach_error: Exception | None = None
        self.reads: dict[str, ProbeAnswer | Exception] = {}
        self.token_refused = False
        self.calls: list[str] = []  # "reach", then the tables read, in order

    async def reach(self, connection: Connection) -> ProbeAnswer:
        self.calls.append("reach")
        if self.reach_error is not None:
            raise self.reach_error
        return self.reach_answer or ProbeAnswer(401, date=self.clock.now())

    async def read_one(self, connection: Connection, table: str) -> ProbeAnswer:
        self.calls.append(table)
        if self.tokens is not None:
            token = await self.tokens.access_token(connection)
            if self.token_refused:
                await self.tokens.after_rejection(connection, token)
        answer = self.reads.get(table, ProbeAnswer(200, records=1))
        if isinstance(answer, Exception):
            raise answer
        return answer


def _conforms(probe: FakeInstanceProbe) -> InstanceProbe:
    return probe
