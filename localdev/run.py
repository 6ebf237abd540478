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
from shared.bootstrap import get_container
from shared.settings import settings_problems

logger = logging.getLogger("localdev.run")


def _port(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _publish(name: str, value: str, explicit: set[str]) -> None:
    """Point a setting at what was started, unless the developer set it in the environment."""
    if name not in explicit:
        os.environ[name] = value


async def start_stand_ins(stack: contextlib.AsyncExitStack, explicit: set[str]) -> None:
    from localdev.entra import start_entra
    from localdev.keyvault import start_keyvault
    from localdev.servicenow import start_simulator
    from localdev.tls import ensure_local_tls

    azurite = Azurite(
        blob_port=_port("AZURITE_BLOB_PORT", 0),
        queue_port=_port("AZURITE_QUEUE_PORT", 0),
        table_port=_port("AZURITE_TABLE_PORT", 0),
    )
    endpoints = await azurite.start()
    stack.push_async_callback(azurite.stop)
    _publish("DataStorage", endpoints.connection_string, explicit)
    _publish("AzureWebJobsStorage", endpoints.connection_string, explicit)
    logger.info(
        "Azurite: blob %s, queue %s, table %s",
        endpoints.blob_port,
        endpoints.queue_port,
        endpoints.table_port,
    )

    tls = ensure_local_tls(local_settings.REPO_ROOT / ".localdev" / "tls")
    _publish("LOCAL_CA_BUNDLE", str(tls.ca_path), explicit)
    keyvault = await start_keyvault(port=_port("KEYVAULT_PORT", 0), tls=tls)
    stack.push_async_callback(keyvault.aclose)
    _publish("KEY_VAULT_URL", keyvault.url, explicit)
    entra = await start_entra(port=_port("ENTRA_PORT", 0), tls=tls)
    stack.push_async_callback(entra.aclose)
    _publish("ENTRA_AUTHORITY_HOST", entra.url, explicit)
    _publish("GRAPH_BASE_URL", entra.url, explicit)
    servicenow = await start_simulator(port=_port("SERVICENOW_PORT", 0))
    stack.push_async_callback(servicenow.aclose)
    logger.info("Key Vault stand-in %s; Entra and Graph stand-in %s", keyvault.url, entra.url)
    print(
        f"ServiceNow simulator: {servicenow.url} (use it as the instance in PUT /api/provisioning)",
        flush=True,
    )


async def serve(app_path: str, *, with_dependencies: bool, explicit: set[str]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    async with contextlib.AsyncExitStack() as stack:
        if with_dependencies:
            await start_stand_ins(stack, explicit)

        # The callback must come back to this host, and then to the portal it serves, whatever
        # PORT is (unless set explicitly).
        own = f"http://127.0.0.1:{_port('PORT', 7071)}"
        _publish("OAUTH_REDIRECT_URI", f"{own}/api/oauth/callback", explicit)
        _publish("PORTAL_URL", f"{own}/api/portal", explicit)
        module_name, _, attribute = app_path.partition(":")
        app = getattr(importlib.import_module(module_name), attribute or "app")
        host = LocalHost(app, HostConfig.load(local_settings.REPO_ROOT / "host.json"))
        url = await host.start(host="127.0.0.1", port=_port("PORT", 7071))
        stack.push_async_callback(host.stop)
        print(f"Functions host ready: {url}/api/health", flush=True)
        print(f"Portal ready: {url}/api/portal", flush=True)
        await stop.wait()
        logger.info("Stopping")
        await get_container().aclose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--app", default="function_app:app", help="module:attribute of the FunctionApp")
    parser.add_argument("--host-only", action="store_true", help="do not start Azurite or the stand-ins")
    args = parser.parse_args(argv)
    observability.install()
    logging.basicConfig(level=logging.INFO, format=observability.LOG_FORMAT, stream=sys.stderr)
    logging.getLogger("azure").setLevel(logging.WARNING)
    explicit = set(os.environ)
    path = local_settings.load()
    logger.info("Settings from %s (environment variables override it)", path.name)
    problems = settings_problems()
    if problems:
        for problem in problems:
            print(f"Misconfigured setting {problem}", file=sys.stderr, flush=True)
        return 2
    asyncio.run(serve(args.app, with_dependencies=not args.host_only, explicit=explicit))
    return 0


if __name__ == "__main__":
    sys.exit(main())
