"""Payment reconciliation service."""
