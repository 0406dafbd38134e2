"""Network tables (placeholder: replaced by the network service)."""
