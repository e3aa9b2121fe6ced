"""APPS (Hendrycks et al., 2021): reading the release's problem folders, and the paper's prompt.

The release is `APPS/{train,test}/NNNN/` folders holding `question.txt`, `solutions.json`,
`input_output.json` (`inputs`, `outputs`, optional `fn_name`), an optional `starter_code.py`
and `metadata.json` (`difficulty`, `url`). `read_apps_problems` reads an extracted copy for the
TFDS builder and for the evaluator alike; `build_prompt` is the one place the prompt is made.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from etils import epath

APPS_SPLITS = ("train", "test")

logger = logging.getLogger(__name__)


class AppsLayoutError(FileNotFoundError):
    """A directory does not hold an extracted APPS release."""


@dataclass(frozen=True)
class AppsProblem:
    """One APPS problem.

    Attributes:
        split: "train" or "test", the release folder it came from.
        problem_id: the folder name, e.g. "0042".
        question: the problem statement.
        starter_code: code the answer must complete ("" when there is none).
        fn_name: the function the tests call ("" for standard-input problems).
        inputs: test inputs, as in `input_output.json`.
        outputs: expected outputs, as in `input_output.json`.
        solutions: reference solutions, verbatim (indentation untouched).
        difficulty: "introductory", "interview" or "competition".
        url: where the problem was collected from.
    """

    split: str
    problem_id: str
    question: str
    starter_code: str
    fn_name: str
    inputs: list
    outputs: list
    solutions: tuple[str, ...]
    difficulty: str
    url: str

    @property
    def key(self) -> str:
        """`<split>/<problem_id>`: unique across the release."""
        return f"{self.split}/{self.problem_id}"

    @property
    def prompt(self) -> str:
        """The APPS prompt for this problem; see `build_prompt`."""
        return build_prompt(self.question, self.starter_code, self.fn_name)


def build_prompt(question: str, starter_code: str = "", fn_name: str = "") -> str:
    """The prompt of the APPS paper, ending where the answer starts.

    Call-based format when the problem names a function or has starter code, standard input
    otherwise.
    """
    call_based = bool(fn_name or starter_code)
    answer_format = "\nUse Call-Based format\n" if call_based else "\nUse Standard Input format\n"
    return "\nQUESTION:\n" + question + "\n" + starter_code + "\n" + answer_format + "\nANSWER:\n"


def find_apps_root(directory: epath.PathLike) -> epath.Path:
    """The folder holding `train/` and `test/`: `directory` itself or its `APPS/` child."""
    directory = epath.Path(directory)
    for candidate in (directory, directory / "APPS"):
        if any((candidate / split).is_dir() for split in APPS_SPLITS):
            return candidate
    raise AppsLayoutError(
        f"No APPS problems in {directory}: expected train/ and test/ folders of problem folders, "
        "there or under APPS/ (as the release tarball extracts).")


def read_apps_problems(root: epath.PathLike, split: str,
                       counts: Counter | None = None) -> Iterator[AppsProblem]:
    """Yields the problems of one split, in folder order, skipping unreadable ones.

    Args:
        root: an extracted release (the folder with train/ and test/, or its parent).
        split: "train" or "test".
        counts: incremented with `problems` and each reason a problem or file was skipped.
    """
    counts = Counter() if counts is None else counts
    for folder in problem_folders(root, split):
        problem = read_problem(folder, split, counts)
        if problem is not None:
            yield problem


def problem_folders(root: epath.PathLike, split: str) -> list[epath.Path]:
    """The problem folders of one split of an extracted release, in order."""
    if split not in APPS_SPLITS:
        raise ValueError(f"APPS split must be one of {APPS_SPLITS}, got {split!r}.")
    split_dir = find_apps_root(root) / split
    if not split_dir.is_dir():
        raise AppsLayoutError(f"No {split}/ folder in the APPS release at {split_dir.parent}.")
    return sorted(path for path in split_dir.iterdir() if path.is_dir())


def read_problem(folder: epath.Path, split: str, counts: Counter) -> AppsProblem | None:
    """One problem folder, or None (counted) when it has no readable question."""
    question = _read_text(folder / "question.txt", counts)
    if question is None:
        counts["problems_without_question"] += 1
        return None
    tests = _read_json(folder / "input_output.json", counts, default={})
    if not isinstance(tests, dict):
        counts["malformed_json"] += 1
        tests = {}
    metadata = _read_json(folder / "metadata.json", counts, default={})
    if not isinstance(metadata, dict):
        counts["malformed_json"] += 1
        metadata = {}
    counts["problems"] += 1
    return AppsProblem(
        split=split,
        problem_id=folder.name,
        question=question,
        starter_code=_read_text(folder / "starter_code.py", counts) or "",
        fn_name=str(tests.get("fn_name") or ""),
        inputs=list(tests.get("inputs") or []),
        outputs=list(tests.get("outputs") or []),
        solutions=_read_solutions(folder / "solutions.json", counts),
        difficulty=str(metadata.get("difficulty") or ""),
        url=str(metadata.get("url") or ""),
    )


def validation_problem_keys(keys: Sequence[str], fraction: float) -> frozenset[str]:
    """The problem keys held out for validation: by problem, never by solution.

    The `ceil(fraction * len(keys))` problems with the smallest key digests are held out (at
    least one when there are two problems or more, never all), so all solutions of a problem
    land on the same side and the choice depends only on the problem keys.
    """
    if len(keys) < 2 or fraction <= 0:
        return frozenset()
    count = min(len(keys) - 1, max(1, math.ceil(fraction * len(keys))))
    ranked = sorted(keys, key=lambda key: hashlib.blake2b(key.encode(), digest_size=8).digest())
    return frozenset(ranked[:count])


def _read_solutions(path: epath.Path, counts: Counter) -> tuple[str, ...]:
    solutions = _read_json(path, counts, default=[])
    if not isinstance(solutions, list):
        counts["malformed_json"] += 1
        return ()
    usable = tuple(s for s in solutions if isinstance(s, str))
    if len(usable) < len(solutions):
        counts["malformed_solutions"] += len(solutions) - len(usable)
    return usable


def _read_text(path: epath.Path, counts: Counter) -> str | None:
    if not path.exists():
        return None
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        counts["invalid_utf8"] += 1
        logger.warning("Skipping %s: not UTF-8.", path)
        return None


def _read_json(path: epath.Path, counts: Counter, default):
    text = _read_text(path, counts)
    if text is None:
        return default
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        counts["malformed_json"] += 1
        logger.warning("Skipping %s: not valid JSON.", path)
        return default
