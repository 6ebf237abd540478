"""The connector's core. Nothing under shared/ imports azure.functions."""
