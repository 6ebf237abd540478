"""A local ServiceNow instance simulator: OAuth, Table API, rate limits and injectable faults.

See README.md in this folder. Tests and benchmarks use :func:`start_simulator`; ``make run`` and
manual use go through ``python -m localdev.servicenow``.
"""

from .app import RunningSimulator, build_app, start_simulator
from .oauth import DEFAULT_CLIENTS
from .state import SimulatorState

__all__ = ["DEFAULT_CLIENTS", "RunningSimulator", "SimulatorState", "build_app", "start_simulator"]
