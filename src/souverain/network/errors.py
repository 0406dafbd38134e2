"""Neutron's error types: the `type` of a NeutronError body is the class title."""

from __future__ import annotations

from souverain.common.errors import BadRequest, Conflict, Forbidden, NotFound, ServiceUnavailable


class NetworkNotFound(NotFound):
    title = "NetworkNotFound"


class SubnetNotFound(NotFound):
    title = "SubnetNotFound"


class PortNotFound(NotFound):
    title = "PortNotFound"


class SecurityGroupNotFound(NotFound):
    title = "SecurityGroupNotFound"


class SecurityGroupRuleNotFound(NotFound):
    title = "SecurityGroupRuleNotFound"


class IpAddressAlreadyAllocated(Conflict):
    title = "IpAddressAlreadyAllocated"


class IpAddressGenerationFailure(Conflict):
    title = "IpAddressGenerationFailure"


class MacAddressInUse(Conflict):
    title = "MacAddressInUse"


class NetworkInUse(Conflict):
    title = "NetworkInUse"


class SubnetInUse(Conflict):
    title = "SubnetInUse"


class PortInUse(Conflict):
    title = "PortInUse"


class SecurityGroupInUse(Conflict):
    title = "SecurityGroupInUse"


class SecurityGroupCannotRemoveDefault(Conflict):
    title = "SecurityGroupCannotRemoveDefault"


class SecurityGroupRuleExists(Conflict):
    title = "SecurityGroupRuleExists"


class RouterNotFound(NotFound):
    title = "RouterNotFound"


class RouterInUse(Conflict):
    title = "RouterInUse"


class RouterInterfaceNotFound(NotFound):
    title = "RouterInterfaceNotFound"


class RouterInterfaceNotFoundForSubnet(NotFound):
    title = "RouterInterfaceNotFoundForSubnet"


class RouterInterfaceInUseByFloatingIP(Conflict):
    title = "RouterInterfaceInUseByFloatingIP"


class RouterExternalGatewayInUseByFloatingIp(Conflict):
    title = "RouterExternalGatewayInUseByFloatingIp"


class FloatingIPNotFound(NotFound):
    title = "FloatingIPNotFound"


class FloatingIPPortAlreadyAssociated(Conflict):
    title = "FloatingIPPortAlreadyAssociated"


class ExternalGatewayForFloatingIPNotFound(NotFound):
    title = "ExternalGatewayForFloatingIPNotFound"


class OverQuota(Conflict):
    title = "OverQuota"


class PolicyNotAuthorized(Forbidden):
    title = "HTTPForbidden"


class InvalidRoutes(BadRequest):
    title = "InvalidRoutes"


class RouterInterfaceInUseByRoute(Conflict):
    title = "RouterInterfaceInUseByRoute"


class SubnetPoolNotFound(NotFound):
    title = "SubnetPoolNotFound"


class SubnetPoolInUse(Conflict):
    title = "SubnetPoolInUse"


class SubnetAllocationError(Conflict):
    title = "SubnetAllocationError"


class NoNetworkAvailable(ServiceUnavailable):
    """The segmentation id range is spent (Neutron's ResourceExhausted: 503)."""

    title = "NoNetworkAvailable"
