"""What log redaction costs per record, with few and with many connected tenants.

Every connected tenant has registered its client secret and its ServiceNow access and refresh
tokens with the redactor, as the secret store and the OAuth client do. Records are logged through
the standard `logging` path (record factory included, a handler that drops them) in the context
of tenants that have secrets, with a mix of the app's log lines: error lines, a wire trace with a
token form, a JSON token body, a URL with a query.

The bound: the per-record cost with 10,000 tenants' secrets registered is at most 1.5x the cost
with 10. Each figure is the best of several rounds (the least disturbed by other work on the
machine). Registering a value is timed too, for the same reason: it must not rebuild anything that
grows with the number of tenants.
"""

from __future__ import annotations

import argparse
import logging
import secrets
import sys
import time
import uuid
from collections.abc import Callable, Sequence

from shared import observability
from shared.observability import log_context, register_secret

BOUND = 1.5
REGISTER_ROUNDS = 50
MESSAGES: list[tuple[str, tuple[object, ...]]] = [
    ("%s %s: %s", ("tickets_list", "validation_error", "The request is not valid: top: Input should be a valid integer")),
    ("Stored secret %s in Key Vault", ("snow-0f0e1d2c-client-secret",)),
    ('HTTP Request: POST %s "HTTP/1.1 200 OK"', ("https://dev12345.service-now.com/oauth_token.do",)),
    ("token form grant_type=refresh_token&refresh_token=%s&client_id=%s", ("{refresh}", "c0ffee-client")),
    ("token body %s", ('{"access_token": "{access}", "token_type": "Bearer", "expires_in": 1800}',)),
    ("GET %s answered %d", ("https://dev12345.service-now.com/api/now/table/incident?sysparm_limit=100", 200)),
    ("Syncing (%s sync requested at %s, attempt %s)", ("timer", "2030-01-01T00:00:00+00:00", 1)),
]  # fmt: skip


class _Drop(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        return None


def connect_tenants(count: int) -> list[tuple[str, str, str]]:
    """Register `count` tenants' secrets; their (tenant id, access token, refresh token)."""
    tenants = []
    for _ in range(count):
        tenant_id, access, refresh = str(uuid.uuid4()), secrets.token_urlsafe(64), secrets.token_urlsafe(64)
        register_secret(secrets.token_urlsafe(24), access, refresh, tenant_id=tenant_id)
        tenants.append((tenant_id, access, refresh))
    return tenants


def per_record_us(
    logger: logging.Logger, tenants: list[tuple[str, str, str]], records: int, rounds: int
) -> float:
    """Microseconds per record, best of `rounds`, logging in the context of `tenants` in turn."""
    plan = []
    for i in range(records):
        tenant_id, access, refresh = tenants[i % len(tenants)]
        template, args = MESSAGES[i % len(MESSAGES)]
        filled = tuple(str(a).replace("{access}", access).replace("{refresh}", refresh) for a in args)
        plan.append((tenant_id, template, filled))
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for tenant_id, template, args in plan:
            with log_context(invocation_id="bench", tenant_id=tenant_id):
                logger.info(template, *args)
        best = min(best, time.perf_counter() - started)
    return best / records * 1e6


def register_us(tenants: list[tuple[str, str, str]], rounds: int) -> float:
    """Microseconds to register a tenant's new access token (tenants in turn), best of `rounds`."""
    turn = iter(range(rounds))

    def register() -> None:
        register_secret(secrets.token_urlsafe(64), tenant_id=tenants[next(turn) % len(tenants)][0])

    return _best(register, rounds) * 1e6


def _best(call: Callable[[], None], rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - started)
    return best


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.redaction", description=__doc__.split("\n")[0])
    parser.add_argument("--few", type=int, default=10, help="tenants in the first measurement")
    parser.add_argument("--many", type=int, default=10_000, help="tenants in the second measurement")
    parser.add_argument("--records", type=int, default=5_000, help="records per round")
    parser.add_argument("--rounds", type=int, default=7)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    observability.install()
    logger = logging.getLogger("bench.redaction")
    logger.handlers[:] = [_Drop()]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    register_secret("operator-graph-client-secret-0123", secrets.token_urlsafe(32), app_wide=True)

    # Each measurement logs for 10 tenants with the same secrets each (the second 10 spread over
    # the many), then times registering 5 more values for each of them.
    few = connect_tenants(args.few)
    per_record_us(logger, few, min(args.records, 200), 1)  # warm up
    few_record = per_record_us(logger, few, args.records, args.rounds)
    few_register = register_us(few, REGISTER_ROUNDS)
    many = connect_tenants(args.many - args.few)
    sample = many[:: max(1, len(many) // len(few))][: len(few)]
    many_record = per_record_us(logger, sample, args.records, args.rounds)
    many_register = register_us(sample, REGISTER_ROUNDS)

    ratio = many_record / few_record
    print(f"per record, {args.few} tenants' secrets registered: {few_record:.2f} us")
    print(f"per record, {args.many} tenants' secrets registered: {many_record:.2f} us")
    print(f"ratio: {ratio:.2f} (bound {BOUND})")
    print(
        f"registering a value: {few_register:.2f} us with {args.few} tenants, {many_register:.2f} us with {args.many}"
    )
    if ratio > BOUND:
        print(
            f"FAIL: redaction costs {ratio:.2f}x more per record with {args.many} tenants than with {args.few}"
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
