"""Importing function_app must be cheap: no network, no SDK client, no heavy SDK import.

The Flex Consumption host gives the app 30 s to initialise (host #10482), and every cold start pays
for what import does. The time ratio is measured by bench/import_cost.py; this checks the rules.
"""

import json
import subprocess
import sys

from localdev.local_settings import REPO_ROOT

PROBE = r"""
import json, sys
events = []
def audit(event, args):
    if event.startswith("socket.") or event in {"http.client.connect", "urllib.Request"}:
        events.append(event)
sys.addaudithook(audit)
import function_app
heavy = [m for m in ("httpx", "msal", "aiohttp", "azure.data.tables", "azure.storage.queue",
                     "azure.keyvault.secrets", "azure.identity", "azure.core.pipeline") if m in sys.modules]
print(json.dumps({"network": events, "heavy": heavy, "functions": len(function_app.app.get_functions())}))
"""


def test_import_does_no_network_io_and_loads_no_sdk_client() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["network"] == []
    assert report["heavy"] == []
    assert report["functions"] >= 1
