"""The Functions app: assembles one Blueprint per area. Nothing else happens at import time."""

import azure.functions as func

from functions import (
    cors,
    docs,
    health,
    improvement_actions,
    oauth,
    portal,
    provisioning,
    sync,
    ticket_completion,
    ticket_notes,
    tickets,
)
from shared import observability

observability.install()

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
for blueprint in (
    health.bp,
    provisioning.bp,
    oauth.bp,
    tickets.bp,
    ticket_notes.bp,
    improvement_actions.bp,
    ticket_completion.bp,
    sync.bp,
    docs.bp,
    portal.bp,
    cors.bp,
):
    app.register_functions(blueprint)
