"""Compute: servers, flavors, the scheduler and the QEMU host driver."""
