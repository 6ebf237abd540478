"""How a failed sync run ends: what it records on the connection, and whether the queue message
is retried (policy, **Failures**: `syncing.py`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from shared.errors import (
    AppError,
    ConnectionNotReady,
    ReauthorizationRequired,
    UpstreamError,
    UpstreamUnavailable,
)
from shared.models import ConnectionStatus

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Ending:
    fields: dict[str, Any]  # what to record on the connection (while it is still the run's)
    skipped: str | None = None  # None: the failure is raised again, so the host retries the message
    not_before: datetime | None = None  # ServiceNow asked us to stay away until then


def ending_of(error: Exception, *, now: datetime, max_retry_after: timedelta) -> Ending:
    """Consumed and recorded when retrying soon cannot help; recorded and retried otherwise."""
    if isinstance(error, ReauthorizationRequired):
        # AccessTokens has already set reauthorization_required and lastError.
        logger.warning("Sync stopped: the ServiceNow grant is dead; waiting for an admin to re-authorize")
        return Ending({}, "reauthorization required")
    if isinstance(error, ConnectionNotReady):
        # Connected, yet no token set or client secret is stored: only re-authorizing fixes it.
        logger.warning("Sync stopped: %s", error.message)
        message = f"{error.message} An admin must re-authorize the connection."
        status = ConnectionStatus.REAUTHORIZATION_REQUIRED
        return Ending({"status": status, "last_error": message}, "reauthorization required")
    if isinstance(error, UpstreamUnavailable):
        wait = timedelta(seconds=error.retry_after)
        if error.hinted and wait > max_retry_after:
            return _deferred(error, now + wait)
        return _retried(error)
    if isinstance(error, UpstreamError):
        # Refused, or answered with something we cannot use (a refused fresh token, a page that
        # is not JSON): retrying in seconds cannot change that; the next scheduled run tries again.
        logger.warning("Sync stopped (not retried; the next scheduled sync tries again): %s", error.message)
        return Ending({"last_error": f"Sync failed: {error.message}"}, "rejected by ServiceNow")
    return _retried(error)


def _deferred(error: UpstreamUnavailable, not_before: datetime) -> Ending:
    logger.warning(
        "Sync stopped: ServiceNow asked us to wait %d s; no sync of this tenant before %s",
        error.retry_after,
        not_before.isoformat(),
    )
    message = (
        f"Sync paused: {error.message} ServiceNow asked us to wait; the next sync "
        f"runs after {not_before:%Y-%m-%d %H:%M:%S} UTC."
    )
    return Ending(
        {"last_error": message, "sync_not_before": not_before}, "deferred by ServiceNow", not_before
    )


def _retried(error: Exception) -> Ending:
    message = error.message if isinstance(error, AppError) else "The sync failed unexpectedly."
    logger.warning("Sync failed (the message will be retried): %s", message)
    return Ending({"last_error": f"Sync failed: {message}"})
