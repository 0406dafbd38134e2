"""Volume tables (placeholder: replaced by the volume service)."""
