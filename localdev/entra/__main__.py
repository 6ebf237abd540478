"""`python -m localdev.entra --port 8444 --tls-dir .localdev/tls [--client ID:SECRET ...] [--page-size N]`"""

from __future__ import annotations

import argparse
import asyncio
import contextlib

from localdev.entra.server import DEFAULT_CLIENTS, start_entra
from localdev.entra.state import DEFAULT_PAGE_SIZE
from localdev.tls import DEFAULT_TLS_DIR, ensure_local_tls


def _client(value: str) -> tuple[str, str]:
    client_id, sep, secret = value.partition(":")
    if not sep or not client_id or not secret:
        raise argparse.ArgumentTypeError("expected CLIENT_ID:CLIENT_SECRET")
    return client_id, secret


async def _serve(port: int, host: str, tls_dir: str, clients: dict[str, str], page_size: int) -> None:
    tls = ensure_local_tls(tls_dir)
    handle = await start_entra(port=port, host=host, tls=tls, clients=clients, page_size=page_size)
    print(f"Entra + Graph stand-in listening on {handle.url}", flush=True)
    print(f"Clients: {', '.join(sorted(clients))}; trust {handle.tls.ca_path} (LOCAL_CA_BUNDLE)", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await handle.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m localdev.entra", description=__doc__)
    parser.add_argument("--port", type=int, default=8444)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--tls-dir", default=str(DEFAULT_TLS_DIR))
    parser.add_argument(
        "--client",
        type=_client,
        action="append",
        help="a registered app, CLIENT_ID:CLIENT_SECRET (repeatable)",
    )
    parser.add_argument(
        "--page-size", type=int, default=DEFAULT_PAGE_SIZE, help="the largest page of control profiles"
    )
    args = parser.parse_args()
    clients = dict(args.client) if args.client else dict(DEFAULT_CLIENTS)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.port, args.host, args.tls_dir, clients, args.page_size))


if __name__ == "__main__":
    main()
