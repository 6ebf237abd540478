"""Telemetry adapters: the Azure Monitor distro's start (`azure_monitor`), the span processor
that stamps the tenant and keeps secrets out of every span (`spans`), and the span of each
outgoing httpx request (`http`). Imported only when telemetry is on or a client is built."""
