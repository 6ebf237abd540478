"""`make run`: Azurite, the local stand-ins and the Functions host, in one Ctrl-C-able process.

Settings come from local.settings.json (else the sample) with environment variables winning;
the endpoints of what is started here (Azurite's ports, the stand-ins' URLs) are filled in once
they are known, so nothing needs to be free on a fixed port except PORT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import logging
import os
import signal
import sys

from localdev import local_settings
from localdev.azurite import Azurite
from localdev.host import HostConfig, LocalHost
from shared import observability

logger = logging.getLogger("localdev.run")


def _port(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


async def serve(app_path: str, *, with_dependencies: bool) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    async with contextlib.AsyncExitStack() as stack:
        if with_dependencies:
            azurite = Azurite(
                blob_port=_port("AZURITE_BLOB_PORT", 0),
                queue_port=_port("AZURITE_QUEUE_PORT", 0),
                table_port=_port("AZURITE_TABLE_PORT", 0),
            )
            endpoints = await azurite.start()
            stack.push_async_callback(azurite.stop)
            os.environ["DataStorage"] = endpoints.connection_string
            os.environ["AzureWebJobsStorage"] = endpoints.connection_string
            logger.info(
                "Azurite: blob %s, queue %s, table %s",
                endpoints.blob_port,
                endpoints.queue_port,
                endpoints.table_port,
            )

        module_name, _, attribute = app_path.partition(":")
        app = getattr(importlib.import_module(module_name), attribute or "app")
        host = LocalHost(app, HostConfig.load(local_settings.REPO_ROOT / "host.json"))
        url = await host.start(host="127.0.0.1", port=_port("PORT", 7071))
        stack.push_async_callback(host.stop)
        print(f"Functions host ready: {url}/api/health", flush=True)
        await stop.wait()
        logger.info("Stopping")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--app", default="function_app:app", help="module:attribute of the FunctionApp")
    parser.add_argument("--host-only", action="store_true", help="do not start Azurite or the stand-ins")
    args = parser.parse_args(argv)
    observability.install()
    logging.basicConfig(level=logging.INFO, format=observability.LOG_FORMAT, stream=sys.stderr)
    logging.getLogger("azure").setLevel(logging.WARNING)
    path = local_settings.load()
    logger.info("Settings from %s (environment variables override it)", path.name)
    asyncio.run(serve(args.app, with_dependencies=not args.host_only))
    return 0


if __name__ == "__main__":
    sys.exit(main())
