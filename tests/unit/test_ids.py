"""Identifiers: the shapes clients expect, and no repeats across forked workers."""

from __future__ import annotations

import os
import re

from souverain.common.ids import new_id, new_request_id, new_secret, random_bytes


def test_ids_and_request_ids_have_the_openstack_shapes() -> None:
    assert re.fullmatch(r"[0-9a-f]{32}", new_id())
    assert re.fullmatch(r"req-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}",
                        new_request_id())  # fmt: skip


def test_random_bytes_do_not_repeat_over_many_pool_refills() -> None:
    seen = {random_bytes(16) for _ in range(5000)}
    assert len(seen) == 5000


def test_a_forked_worker_does_not_reuse_the_parents_pool() -> None:
    random_bytes(16)  # the pool now holds bytes the child would inherit
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        os.write(write, random_bytes(16))
        os._exit(0)
    os.close(write)
    child = os.read(read, 16)
    os.close(read)
    os.waitpid(pid, 0)
    assert child != random_bytes(16)


def test_generated_secrets_never_look_like_a_command_line_option() -> None:
    assert not any(new_secret(6).startswith("-") for _ in range(5000))
