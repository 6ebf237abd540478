"""Our httpx client for ServiceNow: OAuth (authorize URL, code exchange, refresh, revoke) and the
Table API. One long-lived `httpx.AsyncClient` serves every tenant's instance."""
