"""Where ferryd's socket is: the same rules as ferry-common's paths (the Rust client,
the `ferry` command and ferryd follow them too)."""

from __future__ import annotations

import os
from pathlib import Path

#: Overrides the socket path.
SOCKET_ENV = "FERRY_SOCKET"


def socket_path(env: "os._Environ[str] | dict[str, str] | None" = None, uid: int | None = None) -> Path:
    """The socket ferryd serves: ``$FERRY_SOCKET``, else
    ``$XDG_RUNTIME_DIR/ferry/ferryd.sock``, else ``/tmp/ferry-$UID/ferryd.sock``.
    Empty variables count as unset."""
    env = os.environ if env is None else env
    uid = os.getuid() if uid is None else uid
    if env.get(SOCKET_ENV):
        return Path(env[SOCKET_ENV])
    if env.get("XDG_RUNTIME_DIR"):
        return Path(env["XDG_RUNTIME_DIR"]) / "ferry" / "ferryd.sock"
    return Path(f"/tmp/ferry-{uid}") / "ferryd.sock"


def target(path: "str | os.PathLike[str] | None" = None) -> str:
    """The gRPC target of the socket at ``path`` (default: :func:`socket_path`)."""
    return f"unix:{os.fspath(path) if path is not None else socket_path()}"
