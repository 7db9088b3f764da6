"""The LightGBM number patterns accept exactly the language of the plain grammar."""

from __future__ import annotations

import re
import sys

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from amber.adapters import lightgbm

pytestmark = pytest.mark.skipif(
    sys.version_info < (3, 11, 5),
    reason="Python before 3.11.5 uses the plain grammar itself (CPython gh-106052)",
)

PLAIN_INTS = re.compile(rf"{lightgbm.PLAIN_INT}(?: {lightgbm.PLAIN_INT})*")
PLAIN_FLOATS = re.compile(rf"{lightgbm.PLAIN_FLOAT}(?: {lightgbm.PLAIN_FLOAT})*")
# The characters numbers are made of, and a few that are not: near misses are the point.
ALPHABET = "0123456789.eE+- infa\n\t_x"
TOKENS = [
    "1",
    "12",
    "1.",
    ".5",
    "1e5",
    "1e",
    "e5",
    "1e1234",
    "-",
    "+",
    "inf",
    "nan",
    "-inf",
    "1.5e-07",
    "0",
    "--1",
    "1 ",
    " ",
    "12345678901",
    "1234567890",
    ".",
    "1..2",
    "nan1",
]


def _agree(text: str) -> None:
    assert bool(lightgbm._FLOATS.fullmatch(text)) == bool(PLAIN_FLOATS.fullmatch(text)), text
    assert bool(lightgbm._INTS.fullmatch(text)) == bool(PLAIN_INTS.fullmatch(text)), text


@settings(max_examples=1500, deadline=None)
@given(st.text(alphabet=ALPHABET, max_size=24))
@example("1.5 -2 3e10 .5 inf")
@example("1 2  3")
def test_possessive_patterns_accept_what_the_grammar_accepts(text: str) -> None:
    _agree(text)


# A looser grammar than LightGBM's: too many digits, missing parts, doubled signs and dots,
# stray letters; runs of such tokens, separated by zero to two spaces.
_LOOSE = (
    r"[-+]{0,2}(\d{0,12}\.{0,2}\d{0,4}(?:[eE][-+]{0,2}\d{0,5})?"
    r"|\.\d{0,3}(?:[eE][-+]?\d{0,5})?|inf|nan|i|na)"
)
LOOSE_RUN = rf"{_LOOSE}(?: {{0,2}}{_LOOSE}){{0,4}}"


@settings(max_examples=2500, deadline=None)
@given(st.from_regex(LOOSE_RUN, fullmatch=True))
@example(".5e1234")
@example("1.5e123 .5e12")
def test_possessive_patterns_agree_on_near_numbers(text: str) -> None:
    _agree(text)


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.sampled_from(TOKENS), min_size=1, max_size=8), st.sampled_from([" ", "", "  "]))
def test_possessive_patterns_agree_on_number_like_token_runs(tokens: list[str], sep: str) -> None:
    _agree(sep.join(tokens))


def test_the_patterns_are_the_possessive_ones() -> None:
    # Otherwise the comparison above would compare the grammar with itself.
    assert "++" in lightgbm._FLOATS.pattern and "*+" in lightgbm._INTS.pattern
    assert lightgbm._FLOATS.fullmatch("1.5 -2 3e10 .5 inf -nan 7.")
    assert not lightgbm._FLOATS.fullmatch("1.5  2") and not lightgbm._INTS.fullmatch("1.5")
