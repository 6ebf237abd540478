"""`python -m localdev.keyvault --port 8443 --tls-dir .localdev/tls`"""

from __future__ import annotations

import argparse
import asyncio
import contextlib

from localdev.keyvault.server import start_keyvault
from localdev.tls import DEFAULT_TLS_DIR, ensure_local_tls


async def _serve(port: int, host: str, tls_dir: str) -> None:
    handle = await start_keyvault(port=port, host=host, tls=ensure_local_tls(tls_dir))
    print(f"Key Vault stand-in listening on {handle.url}", flush=True)
    print(f"Trust {handle.tls.ca_path} (LOCAL_CA_BUNDLE)", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await handle.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m localdev.keyvault", description=__doc__)
    parser.add_argument("--port", type=int, default=8443)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--tls-dir", default=str(DEFAULT_TLS_DIR))
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.port, args.host, args.tls_dir))


if __name__ == "__main__":
    main()
