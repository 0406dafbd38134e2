"""The host agent (`souverain agent`): runs one hypervisor host for the cloud, with no
database credentials, by watching the control plane's internal API (see
compute/agents.py for the control plane's side)."""
