"""Rewriting curated pairs into answers (Nguyen et al., 2024, back-and-forth translation), the pure part: the
rewriter's prompt, the answer read out of its markers, and how faithful that answer is to the web segment.

An aligned model rewrites each curated segment as an answer to its generated instruction, copying where it can
and adding no facts. The prompt ends with the opening marker, so everything the model writes is inside the
answer and only the closing marker can be missing. A model that stops by itself (eos) without closing it has
still finished its answer; whether that is accepted is ``require_end_marker`` (a 135M model rarely closes the
marker, a 70B chat model does), and each row records how its answer ended. Faithfulness measures, it does not
judge: the share of the answer's word n-grams found in the segment, and the numbers and capitalised
named-entity-like words of the answer that the segment does not have; the stage drops rows below
``rewrite.min_faithfulness`` as ``unfaithful_rewrite``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from udfs.prompts import PromptTemplate, messages

ANSWER_START = "<answer>"
ANSWER_END = "</answer>"
# Appended to the rendered chat prompt: the assistant's turn opens inside the answer.
ANSWER_PREFIX = ANSWER_START + "\n"

RewriteFailure = Literal[
    "truncated",  # generation hit max_tokens before closing the answer
    "no_answer_markers",  # the model stopped without closing the answer, and the closing marker is required
    "empty_answer",  # nothing between the markers
]
AnswerEnd = Literal["marker", "eos"]  # closed by ANSWER_END, or ended by the model stopping (eos) without it

_WORD = re.compile(r"\w+")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
# A word that ends a sentence or a list item: a capitalised word after it is not a name, just the next sentence.
_MID_SENTENCE = re.compile(r"[\w,;]$")


@dataclass(frozen=True)
class RewriteSettings:
    """What the rewrite rows need of the ``rewrite`` config besides prompt and sampling (small, picklable)."""

    min_faithfulness: float = 0.5
    ngram: int = 3
    require_end_marker: bool = False


@dataclass(frozen=True)
class ParsedAnswer:
    answer: str | None
    failure: RewriteFailure | None
    end: AnswerEnd | None


@dataclass(frozen=True)
class Faithfulness:
    ngram_overlap: float  # share of the answer's word n-grams that occur in the segment (1.0: all copied)
    new_numbers: tuple[str, ...]  # numbers of the answer the segment does not have, in order of appearance
    new_entities: tuple[str, ...]  # capitalised mid-sentence words of the answer the segment does not have


def rewrite_conversation(template: PromptTemplate, instruction: str, text: str) -> list[dict[str, str]]:
    """The rewriter's conversation for one curated (instruction, segment) pair."""
    return messages(template.render(instruction=instruction, text=text))


def parse_answer(raw: str | None, finish_reason: str | None, require_end_marker: bool = False) -> ParsedAnswer:
    """The answer the rewriter wrote after the opening marker the prompt gave it, up to the closing marker.

    Without the closing marker, a model that stopped by itself (``finish_reason`` "stop") has finished its
    answer: accepted (``end`` "eos") unless ``require_end_marker``, when it is ``no_answer_markers``. One cut
    at max_tokens (or aborted) is ``truncated``: the end of the answer is missing.
    """
    body = (raw or "").lstrip()
    if body.startswith(ANSWER_START):  # the model repeated the opening marker it was given
        body = body[len(ANSWER_START) :]
    cut = body.find(ANSWER_END)
    if cut >= 0:
        answer, end = body[:cut].strip(), "marker"
    elif finish_reason != "stop":
        return ParsedAnswer(None, "truncated", None)
    elif require_end_marker:
        return ParsedAnswer(None, "no_answer_markers", None)
    else:
        answer, end = body.strip(), "eos"
    if not answer:
        return ParsedAnswer(None, "empty_answer", end)
    return ParsedAnswer(answer, None, end)


def words(text: str) -> list[str]:
    """Lower-cased word tokens (letters, digits, underscore: identifiers in code stay whole)."""
    return _WORD.findall(text.lower())


def ngrams(tokens: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def faithfulness(answer: str, segment: str, n: int = 3) -> Faithfulness:
    """How much of ``answer`` comes from ``segment``: the share of its word n-grams found there (an answer
    shorter than n words is compared as one n-gram of its length; no words: 0), and its numbers and
    capitalised named-entity-like words that the segment lacks (case-insensitive; a number is present when
    the segment has it, or has it as part of a longer one: "3" of "3.11")."""
    answer_words, segment_words = words(answer), words(segment)
    size = min(n, len(answer_words))
    overlap = 0.0
    if size:
        grams = ngrams(answer_words, size)
        known = set(ngrams(segment_words, size))
        overlap = sum(g in known for g in grams) / len(grams)
    segment_numbers = set()
    for number in _NUMBER.findall(segment):
        segment_numbers.add(number)
        segment_numbers.update(re.split(r"[.,]", number))
    new_numbers = _distinct(m for m in _NUMBER.findall(answer) if m not in segment_numbers)
    vocabulary = set(segment_words)
    entities = []
    for match in _WORD.finditer(answer):
        word = match.group()
        before = answer[: match.start()].rstrip()
        if word[0].isupper() and _MID_SENTENCE.search(before) and word.lower() not in vocabulary:
            entities.append(word)
    return Faithfulness(round(overlap, 4), new_numbers, _distinct(entities))


def _distinct(items) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))
