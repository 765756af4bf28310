"""Self-curation, the pure part: judge prompts, parsing the judge's score, and the expected score.

The parser reads only the judge's own final line (public reproductions lost 45-67 % of judge outputs to
loose regexes that took the first "Score:" anywhere, including inside the quoted web text). Every failure
has a kind, counted in the run summary.
"""

from __future__ import annotations

import math
import re
from typing import Any, Callable, Literal, Mapping, NamedTuple

from udfs.prompts import PromptTemplate, messages

# The texts that state each rating right after "Score:", with and without the space: a tokenizer may spell
# " 5" as one token, as a space token and a digit, or merge the space into the colon, and the judge may
# write either form, so a rating's mass is the sum over its forms (disjoint texts: their probabilities add).
# " 1" also covers " 10" and " 1.5"; the judge's rubric asks for one digit, so that mass is negligible.
SCORE_CONTINUATIONS: dict[str, int] = {f"{space}{r}": r for r in range(1, 6) for space in (" ", "")}

# The whole final line must be the score: "Score: 4", "**Score:** 4", "score: 4/5", "Score: 4." ...
_FINAL_LINE = re.compile(r"^[*_#\s]*score[*_\s]*[:：][*_\s]*(?P<value>[-+]?\d+(?:\.\d+)?)\s*(?:/\s*5)?[*_.\s]*$", re.I)
_ANY_SCORE = re.compile(r"score[*_\s]*[:：][*_\s]*([-+]?\d+(?:\.\d+)?)", re.I)

ParseFailure = Literal[
    "empty_output",  # the judge wrote nothing
    "truncated",  # generation hit max_tokens: the final line is not the judge's last word
    "no_score",  # no "Score: N" anywhere
    "score_not_on_last_line",  # a score exists but the last line is something else
    "conflicting_scores",  # the last line holds several different scores
    "not_an_integer",  # "Score: 4.5"
    "out_of_range",  # "Score: 8", "Score: 1986"
    "copied_from_input",  # the final line is verbatim text of the rated instruction or answer
]


class ParsedScore(NamedTuple):
    score: int | None
    failure: ParseFailure | None


ExpectedScoreFailure = Literal[
    "prompt_too_long",  # prompt, reasoning and rating do not fit the judge's context
    "no_rating_mass",  # no rating continuation has a finite log-probability
]


class ExpectedScore(NamedTuple):
    value: float | None
    failure: ExpectedScoreFailure | None


# The curation rule: curated = every listed column >= k ("both": the parsed score and the expected score).
CurationRule = Literal["score", "expected_score", "both"]
RULE_COLUMNS: dict[str, tuple[str, ...]] = {
    "score": ("score",),
    "expected_score": ("expected_score",),
    "both": ("score", "expected_score"),
}


def passes(column: Callable[[str], Any], rule: CurationRule, k: float) -> Any:
    """The curation rule as a condition on judged rows: status ok and every column of ``rule`` >= ``k``
    (a null score never passes). ``column(name)`` gives a column of whatever holds the rows, so the one rule
    serves Spark (``pyspark.sql.functions.col``: a Column) and pandas (``frame.__getitem__``: a boolean
    Series) alike; the stages, the report and training all select with it."""
    condition = column("status") == "ok"
    for name in RULE_COLUMNS[rule]:
        condition = condition & (column(name) >= k)
    return condition


def judge_conversation(template: PromptTemplate, instruction: str, answer: str) -> list[dict[str, str]]:
    """The judge's conversation for one (instruction, answer) pair."""
    return messages(template.render(instruction=instruction, answer=answer))


def parse_score(text: str, finish_reason: str | None = None, quoted: tuple[str, ...] = ()) -> ParsedScore:
    """The judge's score from its own final line: an int 1-5, or None and the failure kind.

    ``quoted`` are the texts the judge was asked to rate: a final line that is a verbatim line of them
    (a segment that ends in "Score: 5", echoed back) is not the judge's score.
    """
    lines = [line.strip() for line in (text or "").strip().splitlines() if line.strip()]
    if not lines:
        return ParsedScore(None, "empty_output")
    if finish_reason == "length":
        return ParsedScore(None, "truncated")
    last = lines[-1]
    found = _ANY_SCORE.findall(last)
    if len(set(found)) > 1:
        return ParsedScore(None, "conflicting_scores")
    match = _FINAL_LINE.match(last)
    if match is None:
        failure: ParseFailure = "score_not_on_last_line" if _ANY_SCORE.search(text) else "no_score"
        return ParsedScore(None, failure)
    if any(last in {q.strip() for q in source.splitlines()} for source in quoted):
        return ParsedScore(None, "copied_from_input")
    value = match.group("value")
    if not re.fullmatch(r"[-+]?\d+", value):
        return ParsedScore(None, "not_an_integer")
    score = int(value)
    if not 1 <= score <= 5:
        return ParsedScore(None, "out_of_range")
    return ParsedScore(score, None)


def score_prompt_suffix(judge_text: str) -> str:
    """What to append to the judge prompt so that the next token is the score digit.

    The judge's reasoning is kept (the score should follow from it), and its own "Score:" line, if any,
    is replaced by a fresh "Score:" so the digit's probabilities are read at the right position.
    """
    lines = (judge_text or "").rstrip().splitlines()
    if lines and _ANY_SCORE.search(lines[-1]):
        lines = lines[:-1]
    reasoning = "\n".join(lines).strip()
    return (reasoning + "\n" if reasoning else "") + "Score:"


def expected_score(logprobs: Mapping[str, float] | None) -> ExpectedScore:
    """E[score] under the judge's distribution over the ratings 1-5 stated after "Score:", from the
    log-probabilities of ``SCORE_CONTINUATIONS`` (``LLMEngine.continuation_logprobs``; None: not scored).
    Normalised over the ratings, so only their relative mass counts, however little the judge put on them."""
    if logprobs is None:
        return ExpectedScore(None, "prompt_too_long")
    finite = [
        (SCORE_CONTINUATIONS[t], lp) for t, lp in logprobs.items() if t in SCORE_CONTINUATIONS and math.isfinite(lp)
    ]
    if not finite:
        return ExpectedScore(None, "no_rating_mass")
    top = max(lp for _, lp in finite)  # shift before exp: a judge sure of something else would underflow to 0
    mass = [(rating, math.exp(lp - top)) for rating, lp in finite]
    total = sum(p for _, p in mass)
    return ExpectedScore(sum(rating * p for rating, p in mass) / total, None)


# Web text that talks to the judge. It is rated, never obeyed (the prompt delimits it as data), and the
# parser ignores an echoed score line; the flags make such rows visible for audits.
_INJECTION_PATTERNS = {
    "score_line": re.compile(r"^[*_#\s]*score[*_\s]*[:：]\s*\d", re.I | re.M),
    "instruction_override": re.compile(
        r"\b(ignore|disregard|forget)\b.{0,40}\b(previous|prior|above|earlier)\b.{0,20}\b(instructions?|prompts?|rules)\b",
        re.I | re.S,
    ),
    "role_marker": re.compile(r"^\s*(system|assistant)\s*:|<\|(system|assistant|user)\|>", re.I | re.M),
}


def injection_flags(text: str) -> list[str]:
    """Names of the judge-directed patterns found in a web text (empty for ordinary text)."""
    return [name for name, pattern in _INJECTION_PATTERNS.items() if pattern.search(text or "")]
