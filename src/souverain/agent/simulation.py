"""The simulation driver: a host that "runs" guests without QEMU, for measuring the
control plane at a scale one machine cannot boot (as Nova tests its scheduler with a fake
driver). Never the default: `souverain agent` refuses it unless `agent.allow_simulation`
is set. Its guests are lines in a JSON file, so a restarted agent adopts them."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


class SimulationDriver:
    kind = "SIMULATION"

    def __init__(self, state_dir: Path, vcpus: int, memory_mib: int, disk_gib: int) -> None:
        self.path = state_dir / "simulated-guests.json"
        state_dir.mkdir(parents=True, exist_ok=True)
        self.capacity = (vcpus, memory_mib, disk_gib)
        self._guests: dict[str, str] = self._load()

    def _load(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def _save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._guests))
        os.replace(tmp, self.path)

    def guests(self) -> dict[str, str]:
        """Each guest on the host and its state: running or stopped."""
        return dict(self._guests)

    def converge(self, server: dict[str, Any]) -> str:
        """Make the guest what the assignment says; what it is now."""
        want = str(server["desired"])
        if want == "absent":
            self.remove(server["id"])
            return "absent"
        if self._guests.get(server["id"]) != want:
            self._guests[server["id"]] = want
            self._save()
        return want

    def apply_network(self, assignment: dict[str, Any]) -> None:
        """A simulated host has no data plane."""

    def remove(self, server_id: str) -> None:
        if self._guests.pop(server_id, None) is not None:
            self._save()

    def report(self) -> dict[str, Any]:
        vcpus, memory, disk = self.capacity
        return {
            "vcpus": vcpus,
            "memory_mib": memory,
            "disk_gib": disk,
            "physical_vcpus": vcpus,
            "physical_memory_mib": memory,
            "physical_disk_gib": disk,
            "hypervisor_type": self.kind,
            "hypervisor_version": 1,
        }
