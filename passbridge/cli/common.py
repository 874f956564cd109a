"""What several command groups share: the default database, exit codes, the key store."""

from __future__ import annotations

import os
from pathlib import Path

from passbridge.adapters.keystore import KeyStoreError, SqliteKeyStore

# serve, sim, keys, phone and audit all default to the same file, so that
# commands run from one folder meet the same key store and audit log.
DEFAULT_DB = Path("passbridge-data") / "passbridge.sqlite3"
# argparse's own code for bad usage; every command uses it for "fix what you typed".
EXIT_USAGE = 2


def open_store(db: str) -> SqliteKeyStore:
    path = Path(db)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise KeyStoreError(
            f"cannot create the folder of key store {db}: {error.strerror or error}"
        ) from None
    return SqliteKeyStore(path)


def write_private(path: Path, text: str) -> None:
    """A private key file readable by its owner only, never overwritten by accident."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
