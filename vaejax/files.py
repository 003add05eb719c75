"""Files written whole or not at all: every file vaejax writes for a user (run folders, songs, pictures,
audio) goes through `write_atomically`."""

from __future__ import annotations

import os


def write_atomically(path: str, write, tmp: str | None = None) -> None:
    """`write(tmp)` then rename onto `path`; on any failure (a full disk, an interrupt) the temporary file is
    removed and `path` is as it was. `tmp`: the temporary name (default `path + ".tmp"`)."""
    tmp = tmp or path + ".tmp"
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
