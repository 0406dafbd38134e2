"""The Neutron callers network tests share as fixtures: two members of their own
projects and the cloud admin. A test module takes them with
`from .neutron_callers import admin, me, other`."""

from __future__ import annotations

import pytest

from .support import Cloud
from .test_networks import Neutron


@pytest.fixture
def me(shared_cloud: Cloud) -> Neutron:
    someone = shared_cloud.member()
    return Neutron(shared_cloud, someone.token, someone.project_id)


@pytest.fixture
def other(shared_cloud: Cloud) -> Neutron:
    someone = shared_cloud.member()
    return Neutron(shared_cloud, someone.token, someone.project_id)


@pytest.fixture
def admin(shared_cloud: Cloud) -> Neutron:
    return Neutron(shared_cloud, shared_cloud.admin_token, shared_cloud.admin_project_id)
