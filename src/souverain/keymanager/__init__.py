"""The key manager: Barbican v1's API over envelope encryption rooted in an HSM or a master
key file."""
