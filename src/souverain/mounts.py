"""Where each OpenStack-style API is mounted on the shared listener, and with which error
renderer and body limit. Only the composition root (`server.py`) calls it; it builds the
APIs' ASGI apps from services it is given and makes no service itself."""

from __future__ import annotations

from souverain.app import Mounted
from souverain.billing import api as billing_api
from souverain.billing.service import BillingService
from souverain.common.clock import Clock
from souverain.compute import api as compute_api
from souverain.compute import api_internal as compute_internal_api
from souverain.compute.service import ComputeService
from souverain.config import Settings
from souverain.identity.service import IdentityService
from souverain.image import api as image_api
from souverain.image.service import ImageService
from souverain.keymanager import api as keymanager_api
from souverain.keymanager.service import KeyManagerService
from souverain.network import api as network_api
from souverain.network.service import NetworkService
from souverain.objectstore.api import swift as swift_api
from souverain.objectstore.service import ObjectStoreService
from souverain.openstack.faults import render_error
from souverain.volume import api as volume_api
from souverain.volume.service import VolumeService


def api_mounts(
    settings: Settings,
    identity: IdentityService,
    compute: ComputeService,
    network: NetworkService,
    volume: VolumeService,
    billing: BillingService,
    image: ImageService,
) -> tuple[Mounted, ...]:
    """The OpenStack APIs on the shared listener (identity is mounted by `build_app`)."""
    public_url = settings.server.public_url
    return (
        Mounted(
            "/compute",
            compute_api.build_app(compute, public_url),
            compute_api.render_error,
        ),
        Mounted(
            "/network",
            network_api.build_app(network, public_url),
            network_api.render_error,
        ),
        Mounted(
            "/volume",
            volume_api.build_app(volume, public_url),
            volume_api.render_error,
        ),
        Mounted(
            "/billing",
            billing_api.build_app(billing, identity, public_url),
            render_error,
        ),
        # the host agents' internal API: a host's own token, never a Keystone one
        Mounted(
            "/internal",
            compute_internal_api.build_app(compute.agents, compute.migrations),
            render_error,
        ),
        Mounted(
            "/image",
            image_api.build_app(image, public_url),
            image_api.render_error,
            image_api.body_limit_for(settings.image),
        ),
    )


def swift_mount(
    settings: Settings, objectstore: ObjectStoreService, identity: IdentityService, clock: Clock
) -> Mounted:
    """Swift on the OpenStack listener, over the same buckets and bytes as S3."""
    return Mounted(
        "/object-storage",
        swift_api.build_app(objectstore, identity, settings.objectstore, clock),
        swift_api.render_error,
        swift_api.body_limit_for(settings.objectstore),
    )


def keymanager_mount(
    settings: Settings, keymanager: KeyManagerService, identity: IdentityService
) -> Mounted:
    """Barbican v1 on the OpenStack listener."""
    return Mounted(
        keymanager_api.PREFIX,
        keymanager_api.build_app(keymanager, identity, settings.server.public_url),
        keymanager_api.render_error,
    )
