"""Opens the root of trust `keymanager.root` names. The PKCS#11 module (and python-pkcs11)
is imported only when a token is asked for, so the file root costs nothing extra."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

from souverain.config import KeyManagerSettings
from souverain.keymanager.file_root import FileRoot
from souverain.keymanager.root import RootOfTrust


def open_root(settings: KeyManagerSettings, data_dir: Path) -> RootOfTrust:
    """The file root (default path `<data_dir>/keys/master.key`) or the PKCS#11 token."""
    if settings.root == "pkcs11":
        module = importlib.import_module("souverain.keymanager.pkcs11_root")
        opener: Callable[[KeyManagerSettings], RootOfTrust] = module.open_pkcs11_root
        return opener(settings)
    return FileRoot(settings.master_key_file or data_dir / "keys" / "master.key")
