"""Finding the processes a sandbox left behind."""

from __future__ import annotations

import os


def processes_of(uids: set[int]) -> list[int]:
    """Pids of live processes owned by any of `uids`."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and os.stat(f"/proc/{entry}").st_uid in uids:
                found.append(int(entry))
        except FileNotFoundError:
            continue
    return found
