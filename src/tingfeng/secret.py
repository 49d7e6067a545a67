"""The installation's secret key (signs acknowledge links; sessions will use it too).

Configured (`secret_key`) or made once at random and kept in the data directory, readable by
the owner only, so links in messages sent before a restart still work after it.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from tingfeng.settings import Settings


def secret_key(settings: Settings) -> bytes:
    if settings.secret_key:
        return settings.secret_key.encode()
    path = Path(settings.data_dir) / "secret_key"
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(32).encode()
    try:
        # O_EXCL: two processes starting together agree on one key (the loser reads the file).
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes().strip()
    with os.fdopen(fd, "wb") as handle:
        handle.write(key)
    return key
