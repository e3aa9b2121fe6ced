"""What a sample can find in its own memory: neither earlier samples nor its own test.

Each sample scans its heap and anonymous mappings (with ctypes) for a secret
it knows only by its hash, and for a control secret it made itself, which a working
scan must find.
"""

from __future__ import annotations

import hashlib
import json
import secrets

import pytest

from neo_keras.evaluation.sandbox import Job, Limits, Sandbox

PREFIX = "LEAK-"
SCANNER = """
import ctypes, hashlib, json, os, re

def count_in_memory(digest):
    # Runs of the prefix and 32 hex digits whose digits hash to `digest`.
    pattern = re.compile(re.escape({prefix!r}).encode() + rb"([0-9a-f]{{32}})")
    found = 0
    with open("/proc/self/maps") as maps:
        regions = [line.split() for line in maps]
    for fields in regions:
        anonymous = len(fields) < 6 or fields[5] in ("[heap]", "[stack]")
        if not anonymous or not fields[1].startswith("r"):
            continue
        start, end = (int(address, 16) for address in fields[0].split("-"))
        for match in pattern.finditer(ctypes.string_at(start, end - start)):
            found += hashlib.sha256(match.group(1)).hexdigest() == digest
    return found

def scan():
    control = os.urandom(16).hex()
    made_here = {prefix!r} + control
    counts = {{
        "secret": count_in_memory({digest!r}),
        "control": count_in_memory(hashlib.sha256(control.encode()).hexdigest()),
    }}
    print(json.dumps(counts))
    return made_here is not None
"""


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(limits=Limits(timeout_s=10.0, memory_bytes=1024**3), workers=1) as box:
        yield box


def scanner(secret: str) -> str:
    digest = hashlib.sha256(secret.encode()).hexdigest()
    return SCANNER.format(prefix=PREFIX, digest=digest)


def counts_of(outcome) -> dict:
    assert outcome.status == "passed", outcome
    counts = json.loads(outcome.stdout.decode().splitlines()[-1])
    assert counts["control"] >= 1, "the scan cannot see this process's own memory"
    return counts


def test_a_sample_finds_nothing_of_earlier_samples(sandbox):
    secret = secrets.token_hex(16)
    earlier = sandbox.run(Job(f"print({PREFIX + secret!r})\nx = {PREFIX + secret!r} * 3"))
    assert earlier.stdout.decode().strip() == PREFIX + secret
    later = sandbox.run(Job(scanner(secret) + "scan()\n"))
    assert counts_of(later)["secret"] == 0


def test_the_program_finds_nothing_of_its_test(sandbox):
    secret = secrets.token_hex(16)
    test = f"# {PREFIX + secret}\nassert candidate()\n"
    outcome = sandbox.run(Job(scanner(secret), test=test, entry_point="scan"))
    assert counts_of(outcome)["secret"] == 0
