"""The network service: Neutron v2.0 compatible API, IPAM, and the Linux data plane."""
