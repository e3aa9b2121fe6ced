"""Which files of a source tree are code worth training on: language, type and quality checks.

The quality rules are those of the scraper that built the Code Clippy corpus: no binary files,
no files that are mostly digits (more than 80% of characters) and no files whose lines average
more than 200 characters (minified or generated code, data dumps).
"""

from __future__ import annotations

import mimetypes
from collections import Counter
from pathlib import Path

MAX_DIGIT_FRACTION = 0.8
MAX_AVERAGE_LINE_LENGTH = 200
# Folders that are never a project's own source: VCS data, caches, installed dependencies.
SKIPPED_DIRS = frozenset(
    {".git", ".hg", ".svn", "node_modules", "__pycache__", "site-packages", "dist-packages"}
)

LANGUAGE_BY_EXTENSION = {
    ".py": "Python",
    ".pyi": "Python",
    ".pyx": "Cython",
    ".c": "C",
    ".h": "C",
    ".cc": "C++",
    ".cpp": "C++",
    ".cxx": "C++",
    ".hh": "C++",
    ".hpp": "C++",
    ".hxx": "C++",
    ".cs": "C#",
    ".java": "Java",
    ".kt": "Kotlin",
    ".kts": "Kotlin",
    ".scala": "Scala",
    ".groovy": "Groovy",
    ".js": "JavaScript",
    ".mjs": "JavaScript",
    ".cjs": "JavaScript",
    ".jsx": "JavaScript",
    ".ts": "TypeScript",
    ".tsx": "TypeScript",
    ".vue": "Vue",
    ".go": "Go",
    ".rs": "Rust",
    ".rb": "Ruby",
    ".php": "PHP",
    ".swift": "Swift",
    ".m": "Objective-C",
    ".mm": "Objective-C++",
    ".lua": "Lua",
    ".pl": "Perl",
    ".pm": "Perl",
    ".r": "R",
    ".jl": "Julia",
    ".hs": "Haskell",
    ".ml": "OCaml",
    ".mli": "OCaml",
    ".ex": "Elixir",
    ".exs": "Elixir",
    ".erl": "Erlang",
    ".clj": "Clojure",
    ".dart": "Dart",
    ".el": "Emacs Lisp",
    ".lisp": "Common Lisp",
    ".scm": "Scheme",
    ".f90": "Fortran",
    ".f": "Fortran",
    ".asm": "Assembly",
    ".s": "Assembly",
    ".sh": "Shell",
    ".bash": "Shell",
    ".zsh": "Shell",
    ".ps1": "PowerShell",
    ".bat": "Batchfile",
    ".sql": "SQL",
    ".html": "HTML",
    ".htm": "HTML",
    ".css": "CSS",
    ".scss": "SCSS",
    ".cmake": "CMake",
    ".md": "Markdown",
    ".tex": "TeX",
    ".yaml": "YAML",
    ".yml": "YAML",
    ".toml": "TOML",
}
LANGUAGE_BY_NAME = {"Makefile": "Makefile", "Dockerfile": "Dockerfile", "CMakeLists.txt": "CMake"}


def language_of(path: Path) -> str | None:
    """The file's language by name or extension, or None when it is not a known code file."""
    if ".min." in path.name:  # minified bundles
        return None
    return LANGUAGE_BY_NAME.get(path.name) or LANGUAGE_BY_EXTENSION.get(path.suffix.lower())


def mime_type_of(path: Path) -> str:
    """A text MIME type for the file, `text/plain` when the extension has none registered."""
    guessed, _ = mimetypes.guess_type(path.name, strict=False)
    return guessed if guessed and guessed.startswith("text/") else "text/plain"


def read_source_text(path: Path, max_bytes: int, counts: Counter) -> str | None:
    """The file's text if it passes the quality rules, else None with the reason counted."""
    try:
        size = path.stat().st_size
        if size > max_bytes:
            counts["too_large"] += 1
            return None
        data = path.read_bytes()
    except OSError:
        counts["unreadable"] += 1
        return None
    reason = _rejection(data)
    if reason:
        counts[reason] += 1
        return None
    return data.decode("utf-8")


def _rejection(data: bytes) -> str | None:
    if b"\x00" in data:
        return "binary"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return "not_utf8"
    if not text.strip():
        return "empty"
    if sum(character.isdigit() for character in text) > MAX_DIGIT_FRACTION * len(text):
        return "mostly_digits"
    lines = text.count("\n") + (0 if text.endswith("\n") else 1)
    if len(text) / lines > MAX_AVERAGE_LINE_LENGTH:
        return "long_lines"
    return None
