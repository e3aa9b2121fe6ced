"""Small source datasets written from code: the builders' dummy_data and the tests' corpora.

`python -m tests.data.fixtures` rewrites every builder's dummy_data/ folder from the
definitions here, so the committed fixtures can always be regenerated and checked.
"""

from __future__ import annotations

import functools
import gzip
import json
import shutil
import tempfile
import zipfile
from pathlib import Path

import zstandard

from neo_keras.data.dedup import digest_fraction, identifier_digest
from neo_keras.data.tokenizer_training import train_byte_level_bpe

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILDERS = REPO_ROOT / "data_builders"


def record_line(text: str, **meta) -> bytes:
    """One Code Clippy format JSON line."""
    meta = {
        "repo_name": "octo/demo",
        "stars": "10",
        "repo_language": "Python",
        "file_name": "demo.py",
        "mime_type": "text/x-python",
        "license": "mit",
        **meta,
    }
    return json.dumps({"text": text, "meta": meta}).encode("utf-8") + b"\n"


def write_zst(path: Path, lines: list[bytes]) -> Path:
    """Writes raw lines (good or deliberately broken) as a zstd shard."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(zstandard.ZstdCompressor(write_checksum=True).compress(b"".join(lines)))
    return path


def write_gz(path: Path, lines: list[bytes]) -> Path:
    """Writes raw lines as a gzip shard."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(b"".join(lines), mtime=0))
    return path


def sampled_functions(count: int, fraction: float = 0.01) -> list[str]:
    """`count` small functions whose identifier digest falls in a `fraction` content sample."""
    found = []
    index = 0
    while len(found) < count:
        text = f"def helper_{index}(value):\n    return value * {index}\n"
        if digest_fraction(identifier_digest(text)) < fraction:
            found.append(text)
        index += 1
    return found


# The Code Clippy fixture. With a sequence length that holds a whole shard, each shard with at
# least one kept file packs into exactly one block, so the expected counts per config are:
#   full: train 3, validation 1, test 1
#   dedup: train 2 (ADD_REFORMATTED and SUB_COPY dropped, shard 2 empties), validation 1, test 1
#   dedup_1pct: train 1 (only the two SAMPLED functions, both in shard 0), validation 1, test 1
ADD = "def add(a, b):\n    return a + b\n"
ADD_REFORMATTED = "def add( a,b ):\n\treturn a+b\n"
STACK = "class Stack:\n    def __init__(self):\n        self.items = []\n"
MUL = "def mul(a, b):\n    return a * b\n"
SUB = "def sub(a, b):\n    return a - b\n"
SUB_COPY = "def sub(a,b):\n  return a-b\n"
HELLO = "print('hello')\n"
CWD = "import os\nprint(os.getcwd())\n"
SAMPLED = sampled_functions(2)


def write_codeclippy_corpus(root: Path, release_layout: bool = False) -> Path:
    """The Code Clippy fixture: duplicates across and within splits, and bad lines.

    In `make_corpus`'s layout (`root/<split>/data_00000.jsonl.zst`), or with `release_layout`
    as the release is published: `root/code_clippy_dedup_data/<split>/` holding
    `data_<n>_time<unix time>_default.jsonl.zst` shards.
    """

    def shard(split: str, index: int) -> Path:
        if release_layout:
            return (
                root
                / "code_clippy_dedup_data"
                / split
                / f"data_{index}_time{1626280476 + 61 * index}_default.jsonl.zst"
            )
        return root / split / f"data_{index:05d}.jsonl.zst"

    write_zst(
        shard("train", 0),
        [
            record_line(ADD, file_name="add.py"),
            record_line(STACK, file_name="stack.py"),
            b'{"text": "def broken(:\n',
            b'{"text": "caf\xe9"}\n',
            *(record_line(text, file_name=f"helper{i}.py") for i, text in enumerate(SAMPLED)),
        ],
    )
    write_zst(
        shard("train", 1),
        [
            record_line(MUL, file_name="mul.py"),
            record_line(ADD_REFORMATTED, repo_name="octo/fork", file_name="add.py"),
            record_line("", file_name="empty.py"),
        ],
    )
    write_zst(
        shard("train", 2),
        [
            record_line(SUB_COPY, repo_name="octo/copy", file_name="sub.py"),
            b'{"meta": {"file_name": "no_text.py"}}\n',
        ],
    )
    write_zst(
        shard("validation", 0),
        [record_line(SUB, file_name="sub.py"), record_line(HELLO, file_name="hello.py")],
    )
    write_zst(shard("test", 0), [record_line(CWD, file_name="cwd.py")])
    return root


# The APPS fixture: three train problems (one call-based with starter code, one standard input,
# one with two solutions of which one is too long for a short sequence) and two test problems.
APPS_PROBLEMS = {
    "train/0000": {
        "question": "Return the sum of a list.\n",
        "starter_code": "def total(xs):\n",
        "input_output": {"fn_name": "total", "inputs": [[[1, 2]]], "outputs": [3]},
        "solutions": [
            "def total(xs):\n    return sum(xs)\n",
            "def total(xs):\n    s = 0\n    for x in xs:\n        s += x\n    return s\n",
        ],
        "metadata": {"difficulty": "introductory", "url": "https://example.org/p/0"},
    },
    "train/0001": {
        "question": "Read n and print n squared.\n",
        "input_output": {"inputs": ["3\n"], "outputs": ["9\n"]},
        "solutions": ["n = int(input())\nprint(n * n)\n"],
        "metadata": {"difficulty": "interview", "url": "https://example.org/p/1"},
    },
    "train/0002": {
        "question": "Print hello.\n",
        "input_output": {"inputs": ["\n"], "outputs": ["hello\n"]},
        "solutions": ["print('hello')\n", "print('hello')\n" + "# padding line\n" * 200],
        "metadata": {"difficulty": "introductory", "url": "https://example.org/p/2"},
    },
    "test/0000": {
        "question": "Double a number read from input.\n",
        "input_output": {"inputs": ["4\n"], "outputs": ["8\n"]},
        "solutions": ["print(2 * int(input()))\n"],
        "metadata": {"difficulty": "competition", "url": "https://example.org/p/3"},
    },
    "test/0001": {
        "question": "Return x + 1.\n",
        "starter_code": "class Solution:\n    def inc(self, x):\n",
        "input_output": {"fn_name": "inc", "inputs": [[1]], "outputs": [2]},
        "solutions": ["class Solution:\n    def inc(self, x):\n        return x + 1\n"],
        "metadata": {"difficulty": "interview", "url": "https://example.org/p/4"},
    },
}


def write_apps_tree(root: Path, problems: dict | None = None) -> Path:
    """An extracted APPS release: `root/APPS/{train,test}/NNNN/` problem folders.

    A problem's texts are written byte for byte (CRLF stays CRLF); a JSON file or the starter
    code is left out when the problem has no such key.
    """
    for key, problem in (problems or APPS_PROBLEMS).items():
        folder = root / "APPS" / key
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "question.txt").write_bytes(problem["question"].encode("utf-8"))
        for name in ("solutions", "input_output", "metadata"):
            if name in problem:
                (folder / f"{name}.json").write_text(json.dumps(problem[name]))
        if "starter_code" in problem:
            (folder / "starter_code.py").write_bytes(problem["starter_code"].encode("utf-8"))
    return root


def code_search_net_line(
    code: str, language: str, split: str, hugging_face_names: bool = False
) -> bytes:
    """One CodeSearchNet Challenge JSON line, with the release's fields (values invented).

    With `hugging_face_names`, the fields as the Hugging Face `code_search_net` loader names
    them.
    """
    record = {
        "repo": "octo/demo",
        "path": f"src/demo.{language}",
        "func_name": "demo.f",
        "original_string": code,
        "language": language,
        "code": code,
        "code_tokens": code.split(),
        "docstring": "",
        "docstring_tokens": [],
        "sha": "0" * 40,
        "partition": split,
        "url": f"https://github.com/octo/demo/blob/{'0' * 40}/src/demo.{language}#L1-L2",
    }
    if hugging_face_names:
        names = {
            "repo": "repository_name",
            "path": "func_path_in_repository",
            "original_string": "whole_func_string",
            "code": "func_code_string",
            "code_tokens": "func_code_tokens",
            "docstring": "func_documentation_string",
            "docstring_tokens": "func_documentation_tokens",
            "partition": "split_name",
            "url": "func_code_url",
        }
        record = {names.get(key, key): value for key, value in record.items()}
    return json.dumps(record).encode("utf-8") + b"\n"


CSN_FILES = {
    ("python", "train"): ["def a():\n    return 1\n", "def b():\n    return 2\n"],
    ("python", "valid"): ["def c():\n    return 3\n"],
    ("python", "test"): ["def d():\n    return 4\n"],
    ("go", "train"): ["func A() int { return 1 }\n"],
    ("go", "valid"): ["func B() int { return 2 }\n"],
    ("go", "test"): ["func C() int { return 3 }\n"],
}
CSN_LANGUAGES = ("go", "java", "javascript", "php", "python", "ruby")


def write_code_search_net_tree(root: Path, hugging_face_names: bool = False) -> Path:
    """Extracted CodeSearchNet zips: `root/<lang>/final/jsonl/<split>/<lang>_<split>_0.jsonl.gz`.

    Java, JavaScript, PHP and Ruby get one train, valid and test function each.
    """
    files = dict(CSN_FILES)
    for language in CSN_LANGUAGES:
        for split in ("train", "valid", "test"):
            files.setdefault((language, split), [f"// {language} {split}\nfn();\n"])
    for (language, split), codes in files.items():
        write_gz(
            root / language / "final" / "jsonl" / split / f"{language}_{split}_0.jsonl.gz",
            [code_search_net_line(code, language, split, hugging_face_names) for code in codes],
        )
    return root


def write_code_search_net_zips(root: Path, languages: tuple[str, ...] = CSN_LANGUAGES) -> Path:
    """The release zips, `root/<language>.zip`, as published: the tree and two pickles."""
    with tempfile.TemporaryDirectory() as scratch:
        tree = write_code_search_net_tree(Path(scratch))
        root.mkdir(parents=True, exist_ok=True)
        for language in languages:
            with zipfile.ZipFile(root / f"{language}.zip", "w") as archive:
                for path in sorted((tree / language).rglob("*")):
                    archive.write(path, path.relative_to(tree).as_posix())
                for pickle_name in ("dedupe_definitions_v2", "licenses"):
                    archive.writestr(f"{language}_{pickle_name}.pkl", b"")
    return root


def train_tiny_tokenizer(output_dir: Path) -> Path:
    """A 400-token byte-level BPE trained on the fixtures' own code."""
    texts = [
        ADD,
        STACK,
        MUL,
        SUB,
        HELLO,
        CWD,
        *SAMPLED,
        *(p["question"] for p in APPS_PROBLEMS.values()),
        *(s for p in APPS_PROBLEMS.values() for s in p["solutions"]),
    ]
    return train_byte_level_bpe(texts * 4, output_dir, vocab_size=400)


def regenerate_dummy_data() -> None:
    """Rewrites data_builders/*/dummy_data from the definitions above."""
    release_corpus = functools.partial(write_codeclippy_corpus, release_layout=True)
    for name, writer in (
        ("codeclippy", release_corpus),
        ("apps", write_apps_tree),
        ("code_search_net", write_code_search_net_tree),
    ):
        target = BUILDERS / name / "dummy_data"
        shutil.rmtree(target, ignore_errors=True)
        writer(target)


if __name__ == "__main__":
    regenerate_dummy_data()
