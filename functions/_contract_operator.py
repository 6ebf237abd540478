"""What the OpenAPI document says of the operator's fleet view (merged into `_contract.OPERATIONS`)."""

from __future__ import annotations

from datetime import UTC, datetime

from functions._contract_types import Answer, Operation
from shared.errors import BadRequest, Conflict, Forbidden, Misconfigured, Unauthenticated, UpstreamUnavailable
from shared.models import ConnectionStatus
from shared.operator_models import FleetConnection, FleetPage, FleetQuery

_AT = datetime(2025, 1, 15, 9, 30, tzinfo=UTC)
FLEET_PAGE = FleetPage(
    items=[
        FleetConnection(
            tenant_id="72f988bf-86f1-41af-91ab-2d7cd011db47",
            status=ConnectionStatus.CONNECTED,
            instance="contoso",
            instance_url="https://contoso.service-now.com",
            connected_at=_AT,
            access_token_expires_at=datetime(2025, 1, 15, 10, 0, tzinfo=UTC),
            refresh_token_expires_at=datetime(2025, 4, 25, 9, 30, tzinfo=UTC),
            last_sync_at=datetime(2025, 1, 15, 9, 35, 2, tzinfo=UTC),
            last_sync_started_at=datetime(2025, 1, 15, 9, 35, tzinfo=UTC),
            last_sync_outcome="succeeded",
            updated_at=datetime(2025, 1, 15, 9, 35, 2, tzinfo=UTC),
        )
    ],
    continuation_token="eyJ0IjoiLi4uIn0",
)

OPERATOR_OPERATIONS: dict[str, Operation] = {
    "operator_connections": Operation(
        summary="Every tenant's connection health",
        description="The operator's fleet view: each tenant's ServiceNow connection (status, instance, token "
        "expiries, the last sync and its outcome, the last error), a page at a time; pass `continuationToken` "
        "from the previous page for the next, with the same `status`. Only a user of the operator's own "
        "tenant (`OPERATOR_TENANT_ID`) holds `Connector.Operator`: the role from any other tenant, and every "
        "caller while the setting is empty, is 403. No secret and no ticket is ever in the answer. A page may "
        "hold fewer than `top` connections and still have a next one.",
        tag="Operator",
        answers=(Answer(200, "A page of connections.", FleetPage, FLEET_PAGE),),
        errors=(Unauthenticated, Forbidden, Conflict, Misconfigured, UpstreamUnavailable, BadRequest),
        query=FleetQuery,
        query_example={"status": "reauthorization_required", "top": 20},
    ),
}
