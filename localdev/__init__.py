"""Local stand-ins so the app runs and is tested with no cloud account (DESIGN.md section 6)."""
