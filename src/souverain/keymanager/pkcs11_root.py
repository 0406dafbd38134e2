"""The root of trust in a PKCS#11 token (an HSM; SoftHSM2 in the tests): project keys are
wrapped by AES-256 root keys the token generated and keeps, with CKM_AES_KEY_WRAP_PAD
(RFC 5649, authenticated: a tampered wrap does not open).

It must not read a root key's value (they are sensitive and non-extractable: the token
refuses), nor put a PIN or a key's bytes into a log line or an error message. Imported
only when `keymanager.root = "pkcs11"`, so a cloud on the master key file never loads
python-pkcs11.

Root keys are token objects labelled `souverain-root-<n>`, version `hsm<n>`; the current
version is the highest `n`. Two processes that rotate at once both make `n + 1`: the one
whose key has the smaller CKA_ID keeps it, the other destroys its own, and both answer
`n + 1`. Why key wrap and not AES-GCM inside the token: the root keys then have
CKA_WRAP/CKA_UNWRAP only, so even a process holding the PIN cannot use them to decrypt
arbitrary data, only to unwrap into a key object; SoftHSM2 2.6 implements the mechanism.

A PKCS#11 library does not survive a fork (`serve` forks its workers after the
composition root is built): the library is initialised again in a child that inherited
it, and each root opens its session lazily, again in a child, and again after the library
was re-initialised. One lock per library serialises the process's token calls (the
project keys they unwrap are cached above, so they are few).
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass
from pkcs11 import exceptions as p11
from pkcs11.types import UnwrapMixin, WrapMixin

from souverain.common.keys import KeyUnavailable
from souverain.config import ConfigError, KeyManagerSettings
from souverain.keymanager.root import RootOfTrust

if TYPE_CHECKING:
    from pkcs11._pkcs11 import lib as Pkcs11Lib

log = logging.getLogger(__name__)

LABEL_PREFIX = "souverain-root-"
VERSION_PREFIX = "hsm"  # versions read "hsm<n>": a stored wrap names the root that made it
KEY_BYTES = 32
WRAPPED_BYTES = KEY_BYTES + 8  # RFC 5649 adds one 64-bit block to a multiple of 8
WRAP = Mechanism.AES_KEY_WRAP_PAD
_INIT_HINT = (
    "softhsm2-util --init-token --free --label {label} --pin <user PIN> --so-pin <SO PIN>"
    " makes one on SoftHSM2 (your HSM's own tool elsewhere)"
)
# Errors after which a fresh session (and login) may succeed: the library was
# re-initialised, another session of this process logged the token out, a session closed.
_STALE = (
    p11.SessionHandleInvalid,
    p11.SessionClosed,
    p11.UserNotLoggedIn,
    p11.ObjectHandleInvalid,
    p11.KeyHandleInvalid,
    p11.WrappingKeyHandleInvalid,
    p11.UnwrappingKeyHandleInvalid,
)
# What a wrap that does not open looks like: SoftHSM2 answers CKR_GENERAL_ERROR when the
# RFC 5649 integrity check fails; other tokens CKR_WRAPPED_KEY_INVALID.
_TAMPERED = (
    p11.WrappedKeyInvalid,
    p11.WrappedKeyLenRange,
    p11.EncryptedDataInvalid,
    p11.GeneralError,
)
_T = TypeVar("_T")


class _Library:
    """The process's one handle on a PKCS#11 module: loaded once (unloading it finalises
    it under every other user), initialised again in a forked child. `generation` changes
    whenever the library was re-initialised, so sessions opened before know they are dead."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.generation = 0
        self._lib: Pkcs11Lib | None = None
        self._pid = 0
        # python-pkcs11 initialises with C_Initialize(NULL): the application promises not
        # to call the library from two threads at once, so every token call (and loading,
        # re-initialising) takes this one lock; a forked child gets a fresh one, as a thread
        # of the parent may have held it at the fork
        self.calls = threading.RLock()
        os.register_at_fork(after_in_child=self._fresh_lock)

    def _fresh_lock(self) -> None:
        self.calls = threading.RLock()

    def get(self) -> Pkcs11Lib:
        with self.calls:
            if self._lib is None:
                self._lib = pkcs11.lib(self.path)
                self._pid = os.getpid()
            elif self._pid != os.getpid():
                self._reinitialize(self._lib)
            return self._lib

    def refresh(self) -> None:
        """Initialise again: a token made since the library started appears only then."""
        with self.calls:
            if self._lib is not None:
                self._reinitialize(self._lib)

    def _reinitialize(self, lib: Pkcs11Lib) -> None:
        # a child's inherited state may already be gone: initialise regardless
        with suppress(p11.PKCS11Error):
            lib.finalize()
        lib.initialize()
        self._pid = os.getpid()
        self.generation += 1


_libraries: dict[str, _Library] = {}
_libraries_lock = threading.Lock()


def _library(module: Path) -> _Library:
    path = str(module)
    with _libraries_lock:
        if path not in _libraries:
            _libraries[path] = _Library(path)
        return _libraries[path]


def _read_pin(pin_file: Path | None) -> str:
    if pin_file is None:
        raise ConfigError(
            'keymanager.root = "pkcs11" needs keymanager.pkcs11_pin_file: a file (0600) '
            "holding the token's user PIN"
        )
    try:
        pin = pin_file.read_text().strip()
    except OSError as exc:
        raise ConfigError(
            f"keymanager.pkcs11_pin_file {pin_file} cannot be read ({exc.strerror})"
        ) from None
    if not pin:
        raise ConfigError(f"keymanager.pkcs11_pin_file {pin_file} is empty")
    if pin_file.stat().st_mode & 0o077:
        log.warning(
            "keymanager.pkcs11_pin_file %s is readable by others than its owner: chmod 600 it",
            pin_file,
        )
    return pin


def _number(text: str, prefix: str) -> int | None:
    """n of `<prefix><n>` (a key's label, a version), or None for anything else."""
    digits = text.removeprefix(prefix)
    if text == digits or not digits.isdigit() or not digits.isascii():
        return None
    return int(digits)


def _version(number: int) -> str:
    return f"{VERSION_PREFIX}{number}"


class Pkcs11Root:
    """`RootOfTrust` on one token, found by its label and logged into with the PIN."""

    name = "pkcs11"

    def __init__(self, library: _Library, token_label: str, pin: str) -> None:
        self._library = library
        self._token_label = token_label
        self._pin = pin
        self._session: pkcs11.Session | None = None
        self._opened_in: tuple[int, int] = (0, -1)  # (pid, library generation)

    @property
    def _lock(self) -> threading.RLock:
        return self._library.calls

    # -- sessions -------------------------------------------------------------------

    def open(self) -> None:
        """Open the session now and make version 1 if the token has no root key yet."""
        with self._lock:
            self._current_session()
            if not self._versions():
                self._generate(1)

    def _current_session(self) -> pkcs11.Session:
        lib = self._library.get()  # first: re-initialises in a forked child
        here = (os.getpid(), self._library.generation)
        if self._session is None or self._opened_in != here:
            token = _find_token(lib, self._token_label)
            if token is None:
                raise p11.NoSuchToken(self._token_label)
            self._session = self._login(token)
            self._opened_in = here
        return self._session

    def _login(self, token: pkcs11.Token) -> pkcs11.Session:
        try:
            return token.open(rw=True, user_pin=self._pin)
        except p11.UserAlreadyLoggedIn:
            # Login is per process and token: another root of this process is logged in,
            # so this session is too (its PIN was checked then).
            return token.open(rw=True)

    def _drop_session(self) -> None:
        self._session = None

    def _call(self, what: str, action: Callable[[pkcs11.Session], _T]) -> _T:
        """`action` on this process's session, once more on a fresh one if the session went
        stale; any other token error is KeyUnavailable (its code named, nothing secret)."""
        with self._lock:
            for attempt in (1, 2):
                try:
                    return action(self._current_session())
                except _STALE:
                    self._drop_session()
                    if attempt == 2:
                        raise self._unavailable(what, "the session stays invalid") from None
                except p11.NoSuchToken:
                    self._drop_session()
                    raise self._unavailable(what, "the token is gone") from None
                except p11.PKCS11Error as exc:
                    self._drop_session()
                    raise self._unavailable(what, type(exc).__name__) from None
            raise AssertionError("unreachable")

    def _unavailable(self, what: str, why: str) -> KeyUnavailable:
        log.error("PKCS#11 token %r could not %s: %s", self._token_label, what, why)
        return KeyUnavailable(
            f"The key manager's HSM could not {what}; retry shortly.",
            headers={"Retry-After": "5"},
        )

    # -- root keys ------------------------------------------------------------------

    def _root_keys(self, session: pkcs11.Session) -> Iterator[tuple[int, bytes, pkcs11.Object]]:
        found = list(
            session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.TOKEN: True})
        )
        for key in found:
            version = _number(str(key[Attribute.LABEL]), LABEL_PREFIX)
            if version is not None:
                yield version, bytes(key[Attribute.ID]), key

    def _versions(self) -> list[int]:
        return self._call(
            "list its root keys", lambda s: sorted({v for v, _, _ in self._root_keys(s)})
        )

    def _key(self, session: pkcs11.Session, version: int) -> pkcs11.SecretKey | None:
        """The root key of `version`; of two made by a race, the one with the smaller id."""
        keys = [(i, k) for v, i, k in self._root_keys(session) if v == version]
        return min(keys, key=lambda pair: pair[0])[1] if keys else None  # type: ignore[return-value]

    def _generate(self, version: int) -> None:
        key_id = secrets.token_bytes(16)

        def generate(session: pkcs11.Session) -> None:
            session.generate_key(
                KeyType.AES,
                256,
                id=key_id,
                label=f"{LABEL_PREFIX}{version}",
                store=True,
                capabilities=MechanismFlag(0),
                template={
                    Attribute.SENSITIVE: True,
                    Attribute.EXTRACTABLE: False,
                    Attribute.PRIVATE: True,
                    Attribute.WRAP: True,
                    Attribute.UNWRAP: True,
                },
            )
            kept = self._key(session, version)
            if kept is not None and bytes(kept[Attribute.ID]) != key_id:
                for v, i, key in list(self._root_keys(session)):
                    if v == version and i == key_id:
                        key.destroy()  # another process made this version first

        self._call("generate a root key", generate)

    def current_version(self) -> str:
        versions = self._versions()
        if not versions:
            raise self._unavailable("find a root key", "the token holds none")
        return _version(versions[-1])

    def versions(self) -> list[str]:
        return [_version(n) for n in self._versions()]

    def wrap(self, key: bytes) -> tuple[str, bytes]:
        if len(key) != KEY_BYTES:
            raise ValueError(f"only {KEY_BYTES}-byte keys are wrapped")
        with self._lock:
            version = self.current_version()

            def wrap(session: pkcs11.Session) -> bytes:
                root = self._key(session, _number(version, VERSION_PREFIX) or 0)
                if root is None:
                    raise p11.NoSuchKey()
                carried = _session_key(session, key)
                try:
                    return cast(WrapMixin, root).wrap_key(carried, mechanism=WRAP)
                finally:
                    carried.destroy()

            return version, self._call("wrap a key", wrap)

    def unwrap(self, version: str, wrapped: bytes) -> bytes:
        number = _number(version, VERSION_PREFIX)
        if number is None:
            raise KeyUnavailable(f"No root key of version {version!r} exists.")
        if len(wrapped) != WRAPPED_BYTES:
            raise ValueError("the wrapped key does not open")
        with self._lock:
            tampered = False

            def unwrap(session: pkcs11.Session) -> bytes | None:
                nonlocal tampered
                root = self._key(session, number)
                if root is None:
                    return None
                try:
                    opened = cast(UnwrapMixin, root).unwrap_key(
                        ObjectClass.SECRET_KEY,
                        KeyType.AES,
                        wrapped,
                        mechanism=WRAP,
                        capabilities=MechanismFlag(0),
                        template=_READABLE,
                    )
                except _TAMPERED:
                    tampered = True
                    return None
                try:
                    return bytes(opened[Attribute.VALUE])
                finally:
                    opened.destroy()

            value = self._call("unwrap a key", unwrap)
        if tampered:
            raise ValueError("the wrapped key does not open")
        if value is None:
            raise KeyUnavailable(f"No root key of version {version} exists (retired).")
        return value

    def rotate(self) -> str:
        with self._lock:
            versions = self._versions()
            new = (versions[-1] if versions else 0) + 1
            self._generate(new)
            log.info("PKCS#11 token %r: root key %s made current", self._token_label, _version(new))
            return _version(new)

    def retire(self, version: str) -> None:
        number = _number(version, VERSION_PREFIX)
        if number is None:
            raise ValueError(f"not a root key version: {version!r}")
        with self._lock:
            if version == self.current_version():
                raise ValueError("the current root key cannot be retired: rotate first")

            def destroy(session: pkcs11.Session) -> None:
                for v, _, key in list(self._root_keys(session)):
                    if v == number:
                        key.destroy()

            self._call("retire a root key", destroy)
            log.info("PKCS#11 token %r: root key version %s destroyed", self._token_label, version)

    def close(self) -> None:
        with self._lock:
            session, self._session = self._session, None
            if session is not None and self._opened_in == (
                os.getpid(),
                self._library.generation,
            ):
                with suppress(p11.PKCS11Error):  # already closed by the token
                    session.close()


# A key unwrapped to be read: a session object (gone with the session), readable once.
_READABLE: dict[Attribute, Any] = {
    Attribute.TOKEN: False,
    Attribute.SENSITIVE: False,
    Attribute.EXTRACTABLE: True,
}


def _session_key(session: pkcs11.Session, key: bytes) -> pkcs11.SecretKey:
    """`key` as a session object the root key can wrap (C_WrapKey wraps objects only)."""
    return session.create_object(  # type: ignore[return-value]
        {
            Attribute.CLASS: ObjectClass.SECRET_KEY,
            Attribute.KEY_TYPE: KeyType.AES,
            Attribute.VALUE: key,
            **_READABLE,
        }
    )


@contextmanager
def _refusal(what: str) -> Iterator[None]:
    try:
        yield
    except p11.PKCS11Error as exc:
        raise ConfigError(f"{what}: {type(exc).__name__}") from None


def open_pkcs11_root(settings: KeyManagerSettings) -> RootOfTrust:
    """The token's root of trust, checked now (module, token, PIN; a first root key made on
    an empty token): a ConfigError that says what to fix when any of them is wrong."""
    pin = _read_pin(settings.pkcs11_pin_file)
    module = settings.pkcs11_module
    label = settings.pkcs11_token_label
    if not module.is_file():
        raise ConfigError(f"keymanager.pkcs11_module {module} does not exist")
    library = _library(module)
    with library.calls:
        with _refusal(f"keymanager.pkcs11_module {module} cannot be loaded"):
            lib = library.get()
        found = _has_token(lib, label)
        if not found:
            library.refresh()  # a token made after this process loaded the library
            found = _has_token(lib, label)
    if not found:
        raise ConfigError(
            f"keymanager.pkcs11_token_label: no token labelled {label!r} in {module}; "
            + _INIT_HINT.format(label=label)
        )
    root = Pkcs11Root(library, label, pin)
    try:
        root.open()
    except KeyUnavailable:
        raise ConfigError(f"the PKCS#11 token {label!r} cannot be used (see the log)") from None
    except (p11.PinIncorrect, p11.PinInvalid, p11.PinLenRange):
        raise ConfigError(
            f"keymanager.pkcs11_pin_file {settings.pkcs11_pin_file}: the token {label!r} "
            "refuses that PIN"
        ) from None
    except p11.PinLocked:
        raise ConfigError(f"the PKCS#11 token {label!r} has locked its user PIN") from None
    except p11.PKCS11Error as exc:
        raise ConfigError(
            f"the PKCS#11 token {label!r} cannot be opened: {type(exc).__name__}"
        ) from None
    log.info("key manager: root of trust in PKCS#11 token %r (%s)", label, module)
    return root


def _find_token(lib: Pkcs11Lib, label: str) -> pkcs11.Token | None:
    """The token labelled `label`, slot by slot: one slot whose token vanished (deleted
    under a running library) does not hide the others."""
    for slot in lib.get_slots(token_present=True):
        try:
            token = slot.get_token()
        except p11.PKCS11Error:
            continue
        if token.label == label:
            return token
    return None


def _has_token(lib: Pkcs11Lib, label: str) -> bool:
    with _refusal("the PKCS#11 module cannot list its tokens"):
        return _find_token(lib, label) is not None
