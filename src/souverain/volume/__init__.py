"""The block storage service: Cinder v3 compatible API, volumes and snapshots as qcow2 files."""
