"""The web tier's process-level parts (gunicorn's worker class)."""
