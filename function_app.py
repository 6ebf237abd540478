"""The Functions app: assembles one Blueprint per area. Nothing else happens at import time."""

import azure.functions as func

from functions import (
    cors,
    docs,
    health,
    improvement_actions,
    oauth,
    operator,
    portal,
    provisioning,
    push_hooks,
    push_setup,
    rules,
    sync,
    ticket_completion,
    ticket_events,
    ticket_notes,
    tickets,
)
from shared import observability

observability.install()

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
for blueprint in (
    health.bp,
    provisioning.bp,
    push_setup.bp,
    push_hooks.bp,
    oauth.bp,
    tickets.bp,
    ticket_notes.bp,
    ticket_events.bp,
    improvement_actions.bp,
    operator.bp,
    rules.bp,
    ticket_completion.bp,
    sync.bp,
    docs.bp,
    portal.bp,
    cors.bp,
):
    app.register_functions(blueprint)
