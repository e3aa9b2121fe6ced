"""Naming a repository's license from its LICENSE / COPYING file, as GitHub's API keys them."""

from __future__ import annotations

from pathlib import Path

UNKNOWN = "unknown"
OTHER = "other"
_LICENSE_FILE_PREFIXES = ("license", "licence", "copying")
_READ_BYTES = 64 << 10

# Checked in order: the first rule whose phrases all occur names the license. More specific
# texts come before the ones they quote (LGPL and AGPL mention the GPL, the PSF license the GPL).
_RULES = (
    ("psf-2.0", ("python software foundation license",)),
    ("agpl-3.0", ("gnu affero general public license",)),
    ("lgpl-3.0", ("gnu lesser general public license", "version 3")),
    ("lgpl-2.1", ("gnu lesser general public license",)),
    ("gpl-3.0", ("gnu general public license", "version 3")),
    ("gpl-2.0", ("gnu general public license", "version 2")),
    ("apache-2.0", ("apache license", "version 2.0")),
    ("mpl-2.0", ("mozilla public license", "2.0")),
    ("bsd-3-clause", ("redistribution and use in source and binary forms", "neither the name")),
    ("bsd-2-clause", ("redistribution and use in source and binary forms",)),
    ("mit", ("permission is hereby granted, free of charge",)),
    ("isc", ("permission to use, copy, modify, and/or distribute this software",)),
    ("unlicense", ("this is free and unencumbered software",)),
)


def license_file(directory: Path) -> Path | None:
    """The directory's own license file (LICENSE*, LICENCE*, COPYING*), if it has one."""
    if not directory.is_dir():
        return None
    candidates = sorted(
        path
        for path in directory.iterdir()
        if path.is_file() and path.name.lower().startswith(_LICENSE_FILE_PREFIXES)
    )
    return candidates[0] if candidates else None


def detect_license(directory: Path) -> str | None:
    """The license key of the directory's license file, `other` if unrecognized, None if none."""
    path = license_file(directory)
    if path is None:
        return None
    with path.open("rb") as handle:
        text = " ".join(handle.read(_READ_BYTES).decode("utf-8", "replace").lower().split())
    for key, phrases in _RULES:
        if all(phrase in text for phrase in phrases):
            return key
    return OTHER
