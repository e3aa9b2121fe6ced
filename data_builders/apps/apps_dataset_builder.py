"""APPS: coding problems with reference solutions, as prompt + solution token examples."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from neo_keras.data.apps import (
    APPS_SPLITS,
    AppsLayoutError,
    AppsProblem,
    find_apps_root,
    problem_folders,
    read_problem,
    reindent_solution,
    training_prompt,
    validation_problem_keys,
)
from neo_keras.data.builder_support import (
    ReportingBuilder,
    TokenConfig,
    manual_dir_or_none,
    token_features,
)
from neo_keras.data.packing import prompt_completion_example
from neo_keras.data.tokenizer import cached_tokenizer

APPS_URL = "https://people.eecs.berkeley.edu/~hendrycks/APPS.tar.gz"
TRAINING_VIEW = "training"
EVALUATION_VIEW = "evaluation"
_EVALUATION_FIELDS = (
    "problem_id",
    "prompt",
    "question",
    "starter_code",
    "fn_name",
    "inputs",
    "outputs",
    "solutions",
    "difficulty",
    "url",
)


@dataclasses.dataclass(eq=False)
class AppsConfig(TokenConfig):
    """Which APPS problems, seen how.

    Attributes:
        problems: the release splits whose problems are used ("train", "test").
        view: "training" (prompt + solution token examples, split into train and validation by
            problem) or "evaluation" (one text example per problem with its tests, for the
            evaluator; tokenizer and sequence_length are unused).
        validation_fraction: share of problems held out for validation in the training view.
    """

    sequence_length: int = 1024
    problems: tuple[str, ...] = ("train",)
    view: str = TRAINING_VIEW
    validation_fraction: float = 0.05

    def __post_init__(self):
        super().__post_init__()
        self.problems = tuple(self.problems)  # a JSON config gives a list
        if not self.problems or not set(self.problems) <= set(APPS_SPLITS):
            raise ValueError(
                f"problems must be a non-empty subset of {APPS_SPLITS}, got {self.problems}."
            )
        if self.view not in (TRAINING_VIEW, EVALUATION_VIEW):
            raise ValueError(
                f"view must be {TRAINING_VIEW!r} or {EVALUATION_VIEW!r}, got {self.view!r}."
            )
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ValueError(
                f"validation_fraction must be in [0, 1), got {self.validation_fraction}."
            )


class Builder(ReportingBuilder):
    """APPS problems as token examples for fine-tuning, or as problems with tests to evaluate."""

    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {
        "1.0.0": "Prompt + solution examples with a solution-only loss mask.",
        "1.1.0": "Training examples and evaluation prompts byte for byte as the APPS scripts "
        "make them (neo_keras.data.apps); `has_starter_code` in the evaluation view.",
    }
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
Optional: without network access, put the release tarball ({APPS_URL}), or its extracted APPS/
folder, in --manual_dir. Otherwise the tarball is downloaded."""
    BUILDER_CONFIGS = [
        AppsConfig(
            name="train",
            problems=("train",),
            description="Train problems; validation held out by problem.",
        ),
        AppsConfig(
            name="train_and_test",
            problems=("train", "test"),
            description="Train and test problems together; validation held out.",
        ),
        AppsConfig(
            name="eval",
            problems=("test",),
            view=EVALUATION_VIEW,
            description="Test problems with their tests and difficulty, as text.",
        ),
    ]

    def _info(self) -> tfds.core.DatasetInfo:
        config = self.builder_config
        if config.view == EVALUATION_VIEW:
            features = tfds.features.FeaturesDict(
                {
                    **{name: tfds.features.Text() for name in _EVALUATION_FIELDS},
                    "has_starter_code": tfds.features.Scalar(np.bool_),
                }
            )
        else:
            features = token_features(config.sequence_length)
        return self.reporting_info(features=features, homepage="https://github.com/hendrycks/apps")

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        root = self._release_root(dl_manager)
        config = self.builder_config
        folders = [
            (split, folder) for split in config.problems for folder in problem_folders(root, split)
        ]
        if config.view == EVALUATION_VIEW:
            return {
                split: self._generate_examples(
                    split=split, folders=[f for f in folders if f[0] == split]
                )
                for split in config.problems
            }
        self.record_tokenizer(config.tokenizer, config.sequence_length)
        held_out = validation_problem_keys(
            [f"{split}/{folder.name}" for split, folder in folders], config.validation_fraction
        )
        splits = {
            "train": [f for f in folders if f"{f[0]}/{f[1].name}" not in held_out],
            "validation": [f for f in folders if f"{f[0]}/{f[1].name}" in held_out],
        }
        return {
            split: self._generate_examples(split=split, folders=split_folders)
            for split, split_folders in splits.items()
            if split_folders
        }

    def _generate_examples(self, split: str, folders: list[tuple[str, epath.Path]]):
        if self.builder_config.view == EVALUATION_VIEW:
            examples = self._evaluation_examples(split, folders)
        else:
            examples = self._training_examples(split, folders)
        return self.require_examples(split, examples, "the APPS problems")

    def _training_examples(self, split, folders):
        counts = self.split_counts(split)
        config = self.builder_config
        tokenizer = cached_tokenizer(config.tokenizer)
        for source_split, folder in folders:
            problem = read_problem(folder, source_split, counts)
            if problem is None:
                continue
            if not problem.solutions:
                counts["problems_without_solutions"] += 1
                continue
            prompt_ids = tokenizer.encode(training_prompt(problem))
            for index, solution in enumerate(problem.solutions):
                if not solution.strip():
                    counts["empty_solutions"] += 1
                    continue
                solution_ids = tokenizer.encode(reindent_solution(solution))
                example = prompt_completion_example(
                    prompt_ids, solution_ids, tokenizer.eot_id, config.sequence_length
                )
                if example is None:
                    counts["too_long"] += 1
                    continue
                counts["examples"] += 1
                yield f"{problem.key}/{index}", example

    def _evaluation_examples(self, split, folders):
        counts = self.split_counts(split)
        for source_split, folder in folders:
            problem = read_problem(folder, source_split, counts)
            if problem is None:
                continue
            if not problem.inputs:
                counts["problems_without_tests"] += 1
                continue
            yield problem.key, _evaluation_record(problem)

    def _release_root(self, dl_manager: tfds.download.DownloadManager) -> epath.Path:
        manual = manual_dir_or_none(dl_manager)
        if manual is not None:
            tarball = manual / "APPS.tar.gz"
            try:
                return find_apps_root(dl_manager.extract(tarball) if tarball.exists() else manual)
            except AppsLayoutError:
                pass  # a manual dir meant for something else: download instead
        return find_apps_root(dl_manager.download_and_extract(APPS_URL))


def _evaluation_record(problem: AppsProblem) -> dict[str, str | bool]:
    return {
        "problem_id": problem.problem_id,
        "prompt": problem.prompt,
        "question": problem.question,
        "starter_code": problem.starter_code or "",
        "has_starter_code": problem.starter_code is not None,
        "fn_name": problem.fn_name,
        "inputs": json.dumps(problem.inputs),
        "outputs": json.dumps(problem.outputs),
        "solutions": json.dumps(list(problem.solutions)),
        "difficulty": problem.difficulty,
        "url": problem.url,
    }
