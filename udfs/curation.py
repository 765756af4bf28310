"""Self-curation, the pure part: judge prompts, parsing the judge's score, and the expected score.

The parser reads only the judge's own final line (public reproductions lost 45-67 % of judge outputs to
loose regexes that took the first "Score:" anywhere, including inside the quoted web text). Every failure
has a kind, counted in the run summary.
"""

from __future__ import annotations

import math
import re
import typing
from typing import TYPE_CHECKING, Any, Callable, Literal, Mapping, NamedTuple, Sequence

from udfs.ids import keyed_id
from udfs.prompts import PromptTemplate, messages

if TYPE_CHECKING:  # the config loads this module: pandas only where frames are selected
    import pandas as pd

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
    "no_logprobs_from_endpoint",  # a remote endpoint (engine.name: openai) answered without log-probabilities
    # or endpoint_<kind>: the request for them failed for good (udfs.openai_client: endpoint_http:503, ...)
]


class ExpectedScore(NamedTuple):
    value: float | None
    failure: ExpectedScoreFailure | None


# The rules that rate pairs: curated = every listed column passes k ("both": the parsed score and the expected
# score). The judge's columns pass at >= k; the likelihood scores (udfs.likelihood: Superfiltering's IFD and the
# conditional loss, joined onto the judged rows by generation) are losses, lower is better: they pass at <= k.
JudgeRule = Literal["score", "expected_score", "both", "ifd", "conditional_loss"]
RULE_COLUMNS: dict[str, tuple[str, ...]] = {
    "score": ("score",),
    "expected_score": ("expected_score",),
    "both": ("score", "expected_score"),
    "ifd": ("ifd",),
    "conditional_loss": ("conditional_loss",),
}
LOWER_IS_BETTER = frozenset({"ifd", "conditional_loss"})
# The values k can take per column: the judge's ratings are 1-5; a loss or a ratio of losses is positive.
K_RANGES: dict[str, tuple[float, float]] = {
    "score": (1, 5),
    "expected_score": (1, 5),
    "ifd": (0, math.inf),
    "conditional_loss": (0, math.inf),
}
# Selection baselines: as many pairs as a judge rule keeps, chosen without the judge: the longest answers
# ("Long Is More for Alignment", 2024, beat LLM-filtered sets of the same size) or a seeded random draw.
BaselineRule = Literal["longest", "random"]
BASELINE_RULES: tuple[str, ...] = typing.get_args(BaselineRule)
CurationRule = Literal["score", "expected_score", "both", "ifd", "conditional_loss", "longest", "random"]


def random_salt(seed: int) -> str:
    """The salt of the random baseline's order, ``keyed_id(generation_id, random_salt(seed))`` ascending
    (``jobs.selection`` computes the same id in Spark)."""
    return f"random-baseline|{seed}"


def baseline_order(rule: str, generation_ids: Sequence[str], lengths: Sequence[int], seed: int) -> list[int]:
    """Indices of the pool in a baseline's order of preference: ``longest`` by answer length (characters)
    descending, ``random`` by a seeded hash of the generation id; ties by generation id, so the order is the
    same on every run, whatever order the pool came in."""
    if rule == "longest":
        keys = [(-length, g) for g, length in zip(generation_ids, lengths)]
    elif rule == "random":
        keys = [(keyed_id(g, random_salt(seed)), g) for g in generation_ids]
    else:
        raise ValueError(f"unknown baseline {rule!r}: choose one of {', '.join(BASELINE_RULES)}")
    return sorted(range(len(keys)), key=keys.__getitem__)


def select_baseline(pool: pd.DataFrame, rule: str, k: int, seed: int) -> pd.DataFrame:
    """The ``k`` pairs of ``pool`` (columns ``generation_id`` and ``length``, one row per pair) a baseline keeps."""
    order = baseline_order(rule, pool["generation_id"].tolist(), pool["length"].tolist(), seed)
    return pool.iloc[order[: max(k, 0)]]


def rating_rule(score_column: str, baseline_of: JudgeRule) -> JudgeRule:
    """The rule that rates pairs: ``score_column`` itself, or ``baseline_of`` when a baseline selects them
    (the baseline keeps as many pairs as that rule does)."""
    return baseline_of if score_column in BASELINE_RULES else score_column


def uses_likelihoods(rule: str) -> bool:
    """Whether ``rule`` reads the likelihoods table (so the rows it filters need its columns joined); a
    baseline reads none itself (its size comes from its judge rule: ask about that)."""
    return any(c in LOWER_IS_BETTER for c in RULE_COLUMNS.get(rule, ()))


def check_k(rule: JudgeRule, k: float) -> None:
    """A ValueError naming the range when ``k`` cannot be a threshold of ``rule``'s columns."""
    for column in RULE_COLUMNS[rule]:
        low, high = K_RANGES[column]
        if not (low <= k <= high if column not in LOWER_IS_BETTER else low < k <= high):
            bound = f"within {low:g}..{high:g}" if high < math.inf else f"> {low:g}"
            raise ValueError(f"min_score must be {bound}, got {k:g} (rule {rule})")


def passing_value(column: str, value: Any, k: float) -> Any:
    """Whether ``value`` of ``column`` passes k: >= k for the judge's scores, <= k for losses."""
    return value <= k if column in LOWER_IS_BETTER else value >= k


def rule_text(rule: JudgeRule, k: float) -> str:
    """The rule as people read it: ``score >= 5.0``, ``ifd <= 0.8``."""
    return " and ".join(f"{c} {'<=' if c in LOWER_IS_BETTER else '>='} {k}" for c in RULE_COLUMNS[rule])


def passes(column: Callable[[str], Any], rule: JudgeRule, k: float) -> Any:
    """The curation rule as a condition on judged rows: status ok and every column of ``rule`` passes ``k``
    (``passing_value``; a null score never passes). ``column(name)`` gives a column of whatever holds the
    rows, so the one rule serves Spark (``pyspark.sql.functions.col``: a Column) and pandas
    (``frame.__getitem__``: a boolean Series) alike; the stages, the report and training all select with it."""
    condition = column("status") == "ok"
    for name in RULE_COLUMNS[rule]:
        condition = condition & passing_value(name, column(name), k)
    return condition


# The judge prompt's fields and the columns of the rows that fill them (udfs.llm_rows.judge_batch).
JUDGE_FIELDS = {"instruction": "instruction", "answer": "text"}


def prefix_order(template: PromptTemplate) -> list[str]:
    """The row columns to sort the judge's input by so that prompts sharing a prefix run next to each other:
    the template's fields in the order they appear in it (score_v1: the instruction, then the answer, after
    the shared rubric). Sorting by them sorts the rendered prompts, so vLLM's prefix cache serves every
    prefix a run of neighbours shares (Daft's prefix bucketing does the same)."""
    placed = sorted((template.text.index("{" + f + "}"), f) for f in JUDGE_FIELDS if f in template.fields)
    return [JUDGE_FIELDS[f] for _, f in placed]


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


def expected_score(logprobs: Mapping[str, float] | str | None) -> ExpectedScore:
    """E[score] under the judge's distribution over the ratings 1-5 stated after "Score:", from the
    log-probabilities of ``SCORE_CONTINUATIONS`` (``LLMEngine.continuation_logprobs``; None: too long to score,
    a string: the engine's failure kind).
    Normalised over the ratings, so only their relative mass counts, however little the judge put on them."""
    if logprobs is None:
        return ExpectedScore(None, "prompt_too_long")
    if isinstance(logprobs, str):  # the engine's failure kind
        return ExpectedScore(None, logprobs)  # type: ignore[arg-type]
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
    # The control tokens of common chat templates (ChatML, Llama 2 and 3, Gemma, GPT-2): encoded as text
    # (udfs.prompts.encode_prompt), they cannot end a turn, but a page quoting them is worth an audit.
    "control_token": re.compile(r"<\|[a-z_]\w*\|>|\[/?INST\]|<</?SYS>>|</?s>|<(start|end)_of_turn>", re.I),
}


def injection_flags(text: str) -> list[str]:
    """Names of the judge-directed patterns found in a web text (empty for ordinary text)."""
    return [name for name, pattern in _INJECTION_PATTERNS.items() if pattern.search(text or "")]
