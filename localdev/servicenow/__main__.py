"""``python -m localdev.servicenow --port PORT [--host H] [--client ID:SECRET ...] [--rate-limit N]``."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence

from .app import start_simulator


def _client(text: str) -> tuple[str, str]:
    client_id, sep, secret = text.partition(":")
    if not sep or not client_id or not secret:
        raise argparse.ArgumentTypeError("expected CLIENT_ID:SECRET")
    return client_id, secret


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m localdev.servicenow", description=__doc__)
    parser.add_argument("--port", type=int, required=True, help="TCP port (0 picks a free one)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument(
        "--client",
        type=_client,
        action="append",
        metavar="CLIENT_ID:SECRET",
        help="register an OAuth client (repeatable); default dev-client-id:dev-client-secret",
    )
    parser.add_argument(
        "--rate-limit",
        type=int,
        default=None,
        metavar="N_PER_HOUR",
        help="Table API requests per hour per user",
    )
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    clients = dict(args.client) if args.client else None
    simulator = await start_simulator(
        host=args.host, port=args.port, clients=clients, rate_limit_per_hour=args.rate_limit
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    print(f"ServiceNow simulator listening on {simulator.url}", flush=True)
    try:
        await stop.wait()
    finally:
        await simulator.aclose()


def main(argv: Sequence[str] | None = None) -> int:
    asyncio.run(serve(parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
