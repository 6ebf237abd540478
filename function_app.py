"""The Functions app: assembles one Blueprint per area. Nothing else happens at import time."""

import azure.functions as func

from functions import health
from shared import observability

observability.install()

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
app.register_functions(health.bp)
