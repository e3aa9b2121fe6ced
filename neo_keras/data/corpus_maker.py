"""Making a Code Clippy format corpus from local source trees (git checkouts, folders of repos).

Each source is either a repository (it has a `.git`) or a folder of repositories: then each
sub-folder is a repository, and the files directly inside the folder form one more. Every kept
file becomes one record `{"text", "meta": {"repo_name", "stars", "repo_language", "file_name",
"mime_type", "license"}}` with its own path as `file_name`. Whole repositories go to train,
validation or test, so no two splits share a repository.
"""

from __future__ import annotations

import configparser
import hashlib
import os
import re
import shutil
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from neo_keras.data.corpus_format import ShardWriter
from neo_keras.data.licenses import UNKNOWN, detect_license
from neo_keras.data.source_files import (
    SKIPPED_DIRS,
    language_of,
    mime_type_of,
    read_source_text,
)

SPLITS = ("train", "validation", "test")


class CorpusError(ValueError):
    """Sources, settings or an output that cannot make a corpus; found before it is written."""


class CorpusOutputError(CorpusError, FileExistsError):
    """The output directory exists and overwriting was not asked for."""


@dataclass(frozen=True)
class Repository:
    """A repository to take files from.

    Attributes:
        name: `owner/name` from the git remote when there is one, else a path-derived name.
        root: its top folder.
        license: license key from its license file (or its parent folder's), or "unknown".
        recursive: False for the loose files directly inside a folder of repositories.
    """

    name: str
    root: Path
    license: str
    recursive: bool = True


@dataclass
class CorpusSummary:
    """What `make_corpus` wrote and skipped."""

    repositories: dict[str, int] = field(default_factory=dict)
    files: dict[str, int] = field(default_factory=dict)
    skipped: Counter = field(default_factory=Counter)
    source_bytes: int = 0

    def describe(self) -> str:
        """A few lines for the terminal."""
        lines = [
            f"{split}: {self.files.get(split, 0)} files from "
            f"{self.repositories.get(split, 0)} repositories"
            for split in SPLITS
        ]
        lines.append(f"source text: {self.source_bytes / 1e6:.1f} MB")
        if self.skipped:
            lines.append(
                "skipped: "
                + ", ".join(f"{reason}={count}" for reason, count in sorted(self.skipped.items()))
            )
        return "\n".join(lines)


def discover_repositories(sources: Sequence[str | os.PathLike]) -> list[Repository]:
    """The repositories in `sources`, sorted by name, each name made unique."""
    repositories = []
    for source in sources:
        root = Path(source).expanduser().resolve()
        if not root.is_dir():
            raise CorpusError(
                f"Source {source} is not a directory: give git checkouts or folders of them."
            )
        repositories.extend(_repositories_in(root))
    return _unique_names(sorted(repositories, key=lambda repo: (repo.name, str(repo.root))))


def assign_splits(
    sizes: dict[str, int], validation_fraction: float, test_fraction: float
) -> dict[str, str]:
    """Repository name -> split, aiming at the fractions of the corpus's bytes.

    Repositories are visited in the order of a digest of their name (stable as repositories
    are added), and go to validation, then test, while those are short of their share and the
    repository is not more than twice that share; the rest train. With three repositories or
    more, validation and test each get at least one.
    """
    ranked = sorted(sizes, key=lambda name: hashlib.blake2b(name.encode(), digest_size=8).digest())
    total = sum(sizes.values())
    splits = dict.fromkeys(ranked, "train")
    if len(ranked) < 3:
        return splits
    for split, fraction in (("validation", validation_fraction), ("test", test_fraction)):
        if fraction <= 0:
            continue
        target = fraction * total
        candidates = [name for name in ranked if splits[name] == "train"]
        taken = 0
        for name in candidates:
            if taken < target and sizes[name] <= 2 * target:
                splits[name] = split
                taken += sizes[name]
        if not taken and len(candidates) > 1:
            splits[min(candidates, key=lambda name: (sizes[name], name))] = split
    return splits


def make_corpus(
    sources: Sequence[str | os.PathLike],
    output: str | os.PathLike,
    validation_fraction: float = 0.05,
    test_fraction: float = 0.05,
    max_file_bytes: int = 1 << 20,
    records_per_shard: int = 10_000,
    overwrite: bool = False,
    progress: bool = False,
) -> CorpusSummary:
    """Writes the corpus of `sources` to `output/{train,validation,test}/*.jsonl.zst`.

    Everything is checked before a file is written (the settings, the output, that there is
    code, that every split asked for gets a repository), and the corpus is written next to
    `output` and moved into place only when complete, so a refused or interrupted run leaves
    nothing behind.

    Raises:
        CorpusError: one sentence naming the problem and the flag or input that fixes it
            (`CorpusOutputError` for an `output` that exists without `overwrite`).
    """
    fractions = {"validation": validation_fraction, "test": test_fraction}
    _check_settings(fractions, max_file_bytes, records_per_shard)
    output = Path(output).expanduser().resolve()
    if output.exists() and not output.is_dir():
        raise CorpusError(f"--output={output} is a file: give a directory for the corpus.")
    if output.exists() and not overwrite:
        raise CorpusOutputError(f"{output} exists; pass --overwrite to replace it.")
    summary = CorpusSummary()
    repositories, files = _repositories_with_code(sources, summary.skipped)
    sizes = {name: sum(size for _, _, size in repo_files) for name, repo_files in files.items()}
    splits = assign_splits(sizes, validation_fraction, test_fraction)
    _check_every_split_is_given(Counter(splits.values()), fractions, "repositories")
    staging = output.with_name(f".{output.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        writers = {split: ShardWriter(staging / split, records_per_shard) for split in SPLITS}
        with writers["train"], writers["validation"], writers["test"]:
            for repo in tqdm(repositories, desc="repositories", disable=not progress):
                split = splits[repo.name]
                written = _write_repository(
                    repo, files[repo.name], writers[split], max_file_bytes, summary
                )
                summary.files[split] = summary.files.get(split, 0) + written
                summary.repositories[split] = summary.repositories.get(split, 0) + 1
        # Files that looked like code may still be skipped as they are read (binary, too big).
        _check_every_split_is_given(Counter(summary.files), fractions, "readable files")
        _replace(staging, output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return summary


def _check_settings(
    fractions: dict[str, float], max_file_bytes: int, records_per_shard: int
) -> None:
    for split, fraction in fractions.items():
        if not 0 <= fraction < 1:
            raise CorpusError(
                f"--{split}_fraction={fraction} is not in [0, 1): give the share "
                "of the corpus's bytes for that split, such as 0.05."
            )
    if sum(fractions.values()) >= 1:
        raise CorpusError(
            f"--validation_fraction={fractions['validation']} and --test_fraction="
            f"{fractions['test']} leave nothing to train on: their sum must be under 1."
        )
    for flag, value in (
        ("max_file_bytes", max_file_bytes),
        ("records_per_shard", records_per_shard),
    ):
        if value < 1:
            raise CorpusError(f"--{flag}={value} must be positive.")


def _repositories_with_code(
    sources: Sequence[str | os.PathLike], skipped: Counter
) -> tuple[list[Repository], dict[str, list]]:
    """The repositories of `sources` that have files in a known language, and those files."""
    repositories = discover_repositories(sources)
    files = {repo.name: _code_files(repo, skipped) for repo in repositories}
    with_code = [repo for repo in repositories if files[repo.name]]
    if not with_code:
        looked_at = ", ".join(str(source) for source in sources)
        raise CorpusError(
            f"No source files in a known language under {looked_at} ({len(repositories)} "
            f"repositories, {skipped['not_code']} other files): give git checkouts or folders "
            "of repositories with code in them."
        )
    skipped["repositories_without_code"] += len(repositories) - len(with_code)
    return with_code, {repo.name: files[repo.name] for repo in with_code}


def _check_every_split_is_given(counts: Counter, fractions: dict[str, float], what: str) -> None:
    """`CorpusError` when a split asked for (fraction > 0) would hold none of `what`.

    `counts`: how many of `what` each split holds.
    """
    empty = [split for split, fraction in fractions.items() if fraction > 0 and not counts[split]]
    if empty:
        found = ", ".join(f"{split} {counts[split]}" for split in SPLITS)
        zeros = " ".join(f"--{split}_fraction=0" for split in empty)
        raise CorpusError(
            f"The {' and '.join(empty)} split would get no {what} ({found}): a corpus is split "
            f"by repository, and validation and test need a repository each beside train. "
            f"Add repositories, or pass {zeros} to make no such split."
        )


def _code_files(repo: Repository, skipped: Counter) -> list[tuple[Path, str, int]]:
    """(path, language, size) of the repository's files in a known language."""
    files = []
    for path in _files_of(repo):
        language = language_of(path)
        if language is None:
            skipped["not_code"] += 1
        else:
            files.append((path, language, path.stat().st_size))
    return files


def _write_repository(
    repo: Repository,
    files: list[tuple[Path, str, int]],
    writer: ShardWriter,
    max_file_bytes: int,
    summary: CorpusSummary,
) -> int:
    repo_language = _main_language(files)
    written = 0
    for path, _, _ in files:
        text = read_source_text(path, max_file_bytes, summary.skipped)
        if text is None:
            continue
        writer.write(
            text,
            {
                "repo_name": repo.name,
                "stars": None,  # unknown for a local tree
                "repo_language": repo_language,
                "file_name": path.relative_to(repo.root).as_posix(),
                "mime_type": mime_type_of(path),
                "license": repo.license,
            },
        )
        summary.source_bytes += len(text.encode("utf-8"))
        written += 1
    return written


def _files_of(repo: Repository) -> Iterator[Path]:
    if not repo.recursive:
        yield from sorted(p for p in repo.root.iterdir() if _is_source_file(p))
        return
    for directory, subdirs, names in os.walk(repo.root):
        subdirs[:] = sorted(d for d in subdirs if d not in SKIPPED_DIRS and not d.startswith("."))
        for name in sorted(names):
            path = Path(directory) / name
            if _is_source_file(path):
                yield path


def _is_source_file(path: Path) -> bool:
    return not path.name.startswith(".") and not path.is_symlink() and path.is_file()


def _main_language(files: list[tuple[Path, str, int]]) -> str:
    sizes: Counter = Counter()
    for _, language, size in files:
        sizes[language] += size
    return max(sorted(sizes), key=sizes.__getitem__) if sizes else ""


def _repositories_in(root: Path) -> list[Repository]:
    if (root / ".git").exists():
        return [Repository(_git_name(root) or root.name, root, detect_license(root) or UNKNOWN)]
    folder_license = detect_license(root)
    repositories = [
        Repository(
            _git_name(child) or f"{root.name}/{child.name}",
            child,
            detect_license(child) or folder_license or UNKNOWN,
        )
        for child in sorted(root.iterdir())
        if child.is_dir()
        and not child.is_symlink()
        and not child.name.startswith(".")
        and child.name not in SKIPPED_DIRS
    ]
    if any(_is_source_file(path) for path in root.iterdir()):
        repositories.append(Repository(root.name, root, folder_license or UNKNOWN, recursive=False))
    return repositories


def _git_name(root: Path) -> str | None:
    """`owner/name` from the origin remote's URL in `.git/config`, if there is one."""
    config_path = root / ".git" / "config"
    if not config_path.is_file():
        return None
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    try:
        parser.read(config_path, encoding="utf-8")
    except configparser.Error:
        return None
    url = parser.get('remote "origin"', "url", fallback="")
    match = re.search(r"[:/]([^/:]+/[^/]+?)(?:\.git)?/?$", url)
    return match.group(1) if match else None


def _unique_names(repositories: list[Repository]) -> list[Repository]:
    seen: Counter = Counter()
    unique = []
    for repo in repositories:
        seen[repo.name] += 1
        name = repo.name if seen[repo.name] == 1 else f"{repo.name}~{seen[repo.name]}"
        unique.append(Repository(name, repo.root, repo.license, repo.recursive))
    return unique


def _replace(staging: Path, output: Path) -> None:
    previous = output.with_name(f".{output.name}.previous-{os.getpid()}")
    if output.exists():
        output.rename(previous)
    staging.rename(output)
    shutil.rmtree(previous, ignore_errors=True)
