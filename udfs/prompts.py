"""Prompt templates (versioned files in conf/prompts) and chat rendering, shared by training and inference.

A template is a text file ``<name>_v<N>.txt`` with ``{placeholders}``; its file stem is the prompt version
recorded in every generated row, so a wording change ships as a new file, never an edit.
Training and the LLM stages render conversations through ``chat_prompt`` and encode them with ``encode_prompt``
so that M_yx and M0 see at inference exactly the ids they were trained on, and so that web text quoting a
chat template's control tokens stays text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

# The prompt format of a base checkpoint that ships no chat template (the tokenizer's own template wins when
# there is one): the plain "### Instruction / ### Response" layout base models have seen in pretraining data,
# with no role markers a base tokenizer would split into pieces. Each turn opens with its header, so the
# generation prompt is an exact prefix of the whole conversation and the answer is only what the model writes;
# training closes the answer with eos (training.data.encode). It writes no bos: the tokenizer adds its own
# (``encode_prompt``).
FALLBACK_CHAT_TEMPLATE = (  # newlines as {{ }} strings: chat templates render with trim_blocks
    "{% for m in messages %}{% if not loop.first %}{{ '\\n\\n' }}{% endif %}"
    "{% if m['role'] == 'system' %}{{ m['content'] }}"
    "{% elif m['role'] == 'user' %}{{ '### Instruction:\\n' + m['content'] }}"
    "{% else %}{{ '### Response:\\n' + m['content'] }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '\\n\\n### Response:\\n' }}{% endif %}"
)

_PLACEHOLDER = re.compile(r"\{([A-Za-z_]\w*)\}")
CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


@dataclass(frozen=True)
class PromptTemplate:
    """A versioned prompt: ``version`` is the file stem (e.g. ``score_v1``), ``text`` has {placeholders}."""

    version: str
    text: str

    @classmethod
    def load(cls, path: str | Path) -> "PromptTemplate":
        path = Path(path)
        if not path.is_absolute() and not path.exists() and (CONF_DIR.parent / path).exists():
            path = CONF_DIR.parent / path  # conf paths are relative to the project root by default
        if not path.is_file():
            raise FileNotFoundError(f"prompt template not found: {path}")
        return cls(version=path.stem, text=path.read_text())

    @property
    def fields(self) -> set[str]:
        return set(_PLACEHOLDER.findall(self.text))

    def render(self, **values: str) -> str:
        missing = self.fields - set(values)
        if missing:
            raise KeyError(f"prompt {self.version} needs {sorted(missing)}")
        # One pass over the template, not str.format: web text is full of braces, and text inserted for
        # one placeholder must never be read as another placeholder.
        return _PLACEHOLDER.sub(lambda m: values[m.group(1)], self.text).strip()


def messages(user: str, system: str | None = None, assistant: str | None = None) -> list[dict[str, str]]:
    """A single-turn conversation in the chat-template message format."""
    out = [{"role": "system", "content": system}] if system else []
    out.append({"role": "user", "content": user})
    if assistant is not None:
        out.append({"role": "assistant", "content": assistant})
    return out


# The contents of a conversation are fenced in a prompt with U+FFF9 and U+FFFB (Unicode's interlinear annotation
# anchor and terminator, reserved for a program's internal use and never in exchanged text). A tokenizer turns
# every special-token string it meets into a control id ("<|im_end|>", "</s>"), so a page that quotes a chat
# template would close the user's turn and write its own: the fences are how ``encode_prompt`` tells the
# template's control tokens from the same strings in web text, instructions and answers, which it encodes as
# text. A content loses any fence characters of its own, so no page can forge a fence.
CONTENT_OPEN, CONTENT_CLOSE = "\ufff9", "\ufffb"
_FENCES = re.compile(f"[{CONTENT_OPEN}{CONTENT_CLOSE}]")


def chat_prompt(tokenizer: Any, conversation: Sequence[dict[str, str]], add_generation_prompt: bool) -> str:
    """The conversation rendered with the tokenizer's chat template (or the fallback), each message's content
    fenced: what ``encode_prompt`` encodes, and what the engines take as a prompt. ``render_chat`` without
    the fences is the text the model reads."""
    template = getattr(tokenizer, "chat_template", None) or FALLBACK_CHAT_TEMPLATE
    fenced = [{**m, "content": fence(m["content"])} for m in conversation]
    return tokenizer.apply_chat_template(
        fenced, chat_template=template, tokenize=False, add_generation_prompt=add_generation_prompt
    )


def render_chat(tokenizer: Any, conversation: Sequence[dict[str, str]], add_generation_prompt: bool) -> str:
    """Render a conversation with the tokenizer's chat template (or the fallback) as text."""
    return unfenced(chat_prompt(tokenizer, conversation, add_generation_prompt))


def fence(text: str) -> str:
    """``text`` as a content of a prompt: encoded as text whatever control-token strings it quotes."""
    return CONTENT_OPEN + _FENCES.sub("", text) + CONTENT_CLOSE


def unfenced(prompt: str) -> str:
    """A prompt as the model reads it: without the fences around its contents."""
    return _FENCES.sub("", prompt)


def control_tokens(tokenizer: Any) -> set[str]:
    """The strings the tokenizer turns into control ids: its special tokens, added or named."""
    added = {t.content for t in tokenizer.added_tokens_decoder.values() if t.special}
    return added | set(tokenizer.all_special_tokens)


def encode_text(tokenizer: Any, text: str) -> list[int]:
    """The ids of ``text`` as text: a special-token string in it is spelt in ordinary tokens, never a control
    id. For web text, instructions and answers encoded outside a prompt."""
    if not text:
        return []
    return tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]


def encode_chat(tokenizer: Any, prompt: str) -> list[int]:
    """The ids of a rendered chat (``chat_prompt``, or a tail of it), without what the tokenizer adds: control
    ids only where the template wrote them (outside the fences), everything else as text.

    The text between two of the template's control tokens is encoded in one piece, as the tokenizer itself
    would encode it, so a prompt whose contents quote no control token gets exactly the ids of its text."""
    names = sorted(control_tokens(tokenizer), key=len, reverse=True)
    pattern = re.compile("|".join(map(re.escape, names))) if names else None
    text, controls, inside = "", [], False
    for piece in re.split(f"([{CONTENT_OPEN}{CONTENT_CLOSE}])", prompt):
        if piece in (CONTENT_OPEN, CONTENT_CLOSE):
            inside = piece == CONTENT_OPEN
            continue
        if not inside and pattern is not None:
            controls += [(len(text) + m.start(), len(text) + m.end()) for m in pattern.finditer(piece)]
        text += piece
    ids, at = [], 0
    for start, end in controls:
        ids += encode_text(tokenizer, text[at:start]) + [tokenizer.convert_tokens_to_ids(text[start:end])]
        at = end
    return ids + encode_text(tokenizer, text[at:])


def encode_prompt(tokenizer: Any, prompt: str) -> list[int]:
    """The token ids of a rendered prompt (``chat_prompt``; text outside fences is trusted as the template's),
    with bos exactly once: a template that writes bos itself gets no second one from the tokenizer, and a
    tokenizer that adds bos adds it to a template that does not. Training and the engine both encode prompts
    here, so the model sees the same ids in both."""
    ids = encode_chat(tokenizer, prompt)
    if tokenizer.bos_token and prompt.startswith(tokenizer.bos_token):  # the template's: a content starts fenced
        return ids
    before, after = _added_ids(tokenizer)
    return before + ids + after


def _added_ids(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The ids the tokenizer adds before and after a text when asked to add its special tokens (bos, eos)."""
    bare = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a", add_special_tokens=True)["input_ids"]
    for i in range(len(full) - len(bare) + 1):
        if full[i : i + len(bare)] == bare:
            return full[:i], full[i + len(bare) :]
    raise ValueError(f"the tokenizer's special tokens change the ids of the text itself: {bare} -> {full}")
