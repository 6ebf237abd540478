"""Use cases: provisioning, ticketing, syncing. Each takes its ports as constructor arguments."""
