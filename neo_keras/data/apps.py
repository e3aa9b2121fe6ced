"""APPS (Hendrycks et al., 2021): reading the release's problem folders, and its two prompts.

The release is `APPS/{train,test}/NNNN/` folders holding `question.txt`, `solutions.json`,
`input_output.json` (`inputs`, `outputs`, optional `fn_name`), an optional `starter_code.py`
and `metadata.json` (`difficulty`, `url`). `read_apps_problems` reads an extracted copy for the
TFDS builder and for the evaluator alike.

The APPS scripts format a problem one way to fine-tune on it and another way to sample from it,
and a model fine-tuned with them has only seen the first. Both are reproduced byte for byte:

- `training_prompt` and `reindent_solution`: the training format of `train/dataset_apps/
  APPSBaseDataset.py` (`initialize`, `sample_gpt_task`), which Code Clippy's APPS data
  (`data_processing/apps.py`, config "formatted") repeats. Call-based when the problem has a
  `starter_code.py`; solutions re-indented to one tab per level.
- `evaluation_prompt`: the format of `eval/generate_gpt_codes.py` (`generate_prompt`), with other
  whitespace, and call-based when `input_output.json` names an `fn_name`.

Both scripts read the text files in Python's text mode, so CRLF and CR line ends arrive as LF;
the reader does the same. The upstream training reader also cuts each text at 150,000
characters; Code Clippy's does not, and neither is needed here, since a text that long is far
beyond any sequence length and its example is dropped as too long.
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
        starter_code: code the answer must complete; None when the folder has no
            `starter_code.py` (an empty file still counts in the prompts).
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
    starter_code: str | None
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
        """What a model is asked to complete when evaluated: see `evaluation_prompt`."""
        return evaluation_prompt(self)


def training_prompt(problem: AppsProblem) -> str:
    """The text before a solution in upstream's training examples, ending where it starts.

    hendrycks/apps `train/dataset_apps/APPSBaseDataset.py`: `initialize` picks the answer
    format by whether `starter_code.py` exists, and `sample_gpt_task` joins the parts.
    """
    has_starter = problem.starter_code is not None
    answer_format = "Call-Based" if has_starter else "Standard Input"
    return (
        f"\nQUESTION:\n{problem.question}\n{problem.starter_code or ''}\n"
        f"\nUse {answer_format} format\n\nANSWER:\n"
    )


def evaluation_prompt(problem: AppsProblem) -> str:
    """The prompt upstream samples solutions from, ending where the answer starts.

    hendrycks/apps `eval/generate_gpt_codes.py`, `generate_prompt` (without peeking): the
    starter code follows the question after one newline, and the answer format follows
    `input_output.json`'s `fn_name`, not the starter code.
    """
    starter = "" if problem.starter_code is None else "\n" + problem.starter_code
    answer_format = "Call-Based" if problem.fn_name else "Standard Input"
    return f"\nQUESTION:\n{problem.question}{starter}\nUse {answer_format} format\nANSWER:\n"


def reindent_solution(code: str) -> str:
    """A solution as upstream trains on it: indentation re-expressed as one tab per level.

    hendrycks/apps `train/dataset_apps/APPSBaseDataset.py`, `reindent_code` (its `reindent.py`
    with tabs on). The indentation unit is the leading run of the first indented line that is
    not blank: that many spaces, or that many tabs if it starts with a tab. Each line then
    trades every whole unit at its start for a tab; lines before that first indented one stay
    as they are. Lines split at LF only, lose trailing CRs, and all end in LF.
    """
    lines = code.split("\n")
    if lines[-1] == "":
        lines.pop()  # the text ended with a newline: no line follows it
    unit = ""
    out = []
    for line in lines:
        line = line.rstrip("\r")
        if not unit and line[:1] in (" ", "\t") and not line.isspace():
            width = len(line) - len(line.lstrip(" \t"))
            unit = line[0] * width
        level = 0
        while unit and line.startswith(unit * (level + 1)):
            level += 1
        out.append("\t" * level + line[len(unit) * level :] + "\n")
    return "".join(out)


def find_apps_root(directory: epath.PathLike) -> epath.Path:
    """The folder holding `train/` and `test/`: `directory` itself or its `APPS/` child."""
    directory = epath.Path(directory)
    for candidate in (directory, directory / "APPS"):
        if any((candidate / split).is_dir() for split in APPS_SPLITS):
            return candidate
    raise AppsLayoutError(
        f"No APPS problems in {directory}: expected train/ and test/ folders of problem folders, "
        "there or under APPS/ (as the release tarball extracts)."
    )


def read_apps_problems(
    root: epath.PathLike, split: str, counts: Counter | None = None
) -> Iterator[AppsProblem]:
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
    question = _read_text(folder / "question.txt", counts, newlines=True)
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
        starter_code=_read_text(folder / "starter_code.py", counts, newlines=True),
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


def _read_text(path: epath.Path, counts: Counter, newlines: bool = False) -> str | None:
    """The file's UTF-8 text, or None when it is absent or not UTF-8 (counted).

    With `newlines`, CRLF and CR become LF, as Python's text mode reads them upstream.
    """
    if not path.exists():
        return None
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        counts["invalid_utf8"] += 1
        logger.warning("Skipping %s: not UTF-8.", path)
        return None
    return text.replace("\r\n", "\n").replace("\r", "\n") if newlines else text


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
