"""How a child process gets its settings: its parent's, resolved, as one encoded struct on its
stdin.

The parent fills a pipe with `encode_settings(...)` before the child starts and gives the
child the pipe's read end as its stdin; the child reads it to the end and decodes it. Not the
command line, where the admin key and the database password would show in `ps`; not a
rewritten environment, which the child would parse again and could read differently.
"""

from __future__ import annotations

import os
import sys

from api.settings import Settings, decode_settings

# Bytes of encoded settings at most (they are about 600). A pipe holds at least this much with
# nobody reading it (Linux 64 KiB, macOS 16 KiB), so the parent writes them whole, before the
# child starts, and can never block on a child that is slow to read or died.
SETTINGS_BYTES_MAX = 16 * 1024


def settings_pipe(encoded: bytes) -> int:
    """The read end of a pipe holding `encoded` and then its end: a child's stdin. The caller
    closes it once the child has started (the child has its own copy)."""
    assert len(encoded) <= SETTINGS_BYTES_MAX, f"settings of {len(encoded)} bytes"
    read_end, write_end = os.pipe()
    try:
        view = memoryview(encoded)
        while view:
            view = view[os.write(write_end, view) :]
    except BaseException:
        os.close(read_end)
        raise
    finally:
        os.close(write_end)
    return read_end


def settings_from_stdin() -> Settings:
    """The settings the parent put on this process's stdin."""
    encoded = sys.stdin.buffer.read(SETTINGS_BYTES_MAX + 1)
    if len(encoded) > SETTINGS_BYTES_MAX:
        raise ValueError(f"more than {SETTINGS_BYTES_MAX} bytes of settings on stdin")
    return decode_settings(encoded)
