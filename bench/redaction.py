"""What log redaction costs per record, with few and with many connected tenants.

Every connected tenant has registered its client secret and its ServiceNow access and refresh
tokens with the redactor, as the secret store and the OAuth client do. Records are logged through
the standard `logging` path (record factory included, a handler that drops them) in the context
of tenants that have secrets, with a mix of the app's log lines: error lines, a wire trace with a
token form, a JSON token body, a URL with a query.

The bound: the per-record cost with 10,000 tenants' secrets registered is at most 1.5x the cost
with 10. The two populations live side by side, each in its own redactor, and are measured in
alternating rounds; each figure is the best round (the least disturbed by other work on the
machine). Registering a value is timed too: it must not rebuild anything that grows with the
number of tenants.
"""

from __future__ import annotations

import argparse
import logging
import secrets
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from unittest import mock

from shared import observability
from shared.observability import log_context, register_secret

BOUND = 1.5
LOGGING_TENANTS = 10
MESSAGES: list[tuple[str, tuple[object, ...]]] = [
    ("%s %s: %s", ("tickets_list", "validation_error", "The request is not valid: top: Input should be a valid integer")),
    ("Stored secret %s in Key Vault", ("snow-0f0e1d2c-client-secret",)),
    ('HTTP Request: POST %s "HTTP/1.1 200 OK"', ("https://dev12345.service-now.com/oauth_token.do",)),
    ("token form grant_type=refresh_token&refresh_token=%s&client_id=%s", ("{refresh}", "c0ffee-client")),
    ("token body %s", ('{"access_token": "{access}", "token_type": "Bearer", "expires_in": 1800}',)),
    ("GET %s answered %d", ("https://dev12345.service-now.com/api/now/table/incident?sysparm_limit=100", 200)),
    ("Syncing (%s sync requested at %s, attempt %s)", ("timer", "2030-01-01T00:00:00+00:00", 1)),
]  # fmt: skip


Tenant = tuple[str, str, str]  # tenant id, access token, refresh token


class _Drop(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        return None


@dataclass
class Setup:
    """One population of connected tenants in its own redactor, and the 10 that log."""

    redactor: Any
    logging_tenants: list[Tenant]
    record_us: float = float("inf")
    register_us: float = float("inf")

    @contextmanager
    def active(self) -> Iterator[None]:
        # The record factory uses the module's redactor: each setup swaps in its own, so that the
        # two are measured in alternating rounds under the same load from the rest of the machine.
        with mock.patch.object(observability, "_redactor", self.redactor):
            yield


def connect_tenants(count: int) -> list[Tenant]:
    """Register `count` tenants' client secret and tokens with the active redactor."""
    tenants = []
    for _ in range(count):
        tenant_id, access, refresh = str(uuid.uuid4()), secrets.token_urlsafe(64), secrets.token_urlsafe(64)
        register_secret(secrets.token_urlsafe(24), access, refresh, tenant_id=tenant_id)
        tenants.append((tenant_id, access, refresh))
    return tenants


def build(tenants: int, logging_count: int) -> Setup:
    setup = Setup(observability._Redactor(), [])
    with setup.active():
        register_secret("operator-graph-client-secret-0123", secrets.token_urlsafe(32), app_wide=True)
        connected = connect_tenants(tenants)
    # Those that log are spread over the population, each with the same secrets as in the other setup.
    setup.logging_tenants = connected[:: max(1, tenants // logging_count)][:logging_count]
    return setup


def plan(tenants: list[Tenant], records: int) -> list[tuple[str, str, tuple[object, ...]]]:
    """The records to log: the messages in turn, each in the context of the next tenant."""
    planned = []
    for i in range(records):
        tenant_id, access, refresh = tenants[i % len(tenants)]
        template, args = MESSAGES[i % len(MESSAGES)]
        filled = tuple(
            a.replace("{access}", access).replace("{refresh}", refresh) if isinstance(a, str) else a
            for a in args
        )
        planned.append((tenant_id, template, filled))
    return planned


def measure_round(setup: Setup, logger: logging.Logger, records: int) -> None:
    """One round: log `records` records, then register a new access token for each logging tenant."""
    planned = plan(setup.logging_tenants, records)
    with setup.active():
        started = time.perf_counter()
        for tenant_id, template, args in planned:
            with log_context(invocation_id="bench", tenant_id=tenant_id):
                logger.info(template, *args)
        setup.record_us = min(setup.record_us, (time.perf_counter() - started) / records * 1e6)
        for tenant_id, _, _ in setup.logging_tenants:
            token = secrets.token_urlsafe(64)
            started = time.perf_counter()
            register_secret(token, tenant_id=tenant_id)
            setup.register_us = min(setup.register_us, (time.perf_counter() - started) * 1e6)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.redaction", description=__doc__.split("\n")[0])
    parser.add_argument("--few", type=int, default=10, help="tenants in the first setup")
    parser.add_argument("--many", type=int, default=10_000, help="tenants in the second setup")
    parser.add_argument("--records", type=int, default=3_000, help="records per round")
    parser.add_argument("--rounds", type=int, default=7, help="rounds per setup, alternating")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    observability.install()
    logger = logging.getLogger("bench.redaction")
    logger.handlers[:] = [_Drop()]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    few, many = build(args.few, LOGGING_TENANTS), build(args.many, LOGGING_TENANTS)
    measure_round(few, logger, min(args.records, 200))  # warm up
    for _ in range(args.rounds):
        for setup in (few, many):
            measure_round(setup, logger, args.records)

    ratio = many.record_us / few.record_us
    print(f"per record, {args.few} tenants' secrets registered: {few.record_us:.2f} us")
    print(f"per record, {args.many} tenants' secrets registered: {many.record_us:.2f} us")
    print(f"ratio: {ratio:.2f} (bound {BOUND})")
    print(
        f"registering a value: {few.register_us:.2f} us with {args.few} tenants, {many.register_us:.2f} us with {args.many}"
    )
    if ratio > BOUND:
        print(
            f"FAIL: redaction costs {ratio:.2f}x more per record with {args.many} tenants than with {args.few}"
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
