"""Prompt templates (versioned files in conf/prompts) and chat rendering, shared by training and inference.

A template is a text file ``<name>_v<N>.txt`` with ``{placeholders}``; its file stem is the prompt version
recorded in every generated row, so a wording change ships as a new file, never an edit.
Training and the LLM stages render conversations through ``render_chat`` so that M_yx and M0 see at
inference exactly the format they were trained on.
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


def render_chat(tokenizer: Any, conversation: Sequence[dict[str, str]], add_generation_prompt: bool) -> str:
    """Render a conversation with the tokenizer's chat template (or the fallback) as text."""
    template = getattr(tokenizer, "chat_template", None) or FALLBACK_CHAT_TEMPLATE
    return tokenizer.apply_chat_template(
        list(conversation), chat_template=template, tokenize=False, add_generation_prompt=add_generation_prompt
    )


def encode_prompt(tokenizer: Any, text: str) -> list[int]:
    """The token ids of a rendered prompt, with bos exactly once: a template that writes bos itself gets no
    second one from the tokenizer, and a tokenizer that adds bos adds it to a template that does not.
    Training and the engine both encode prompts here, so the model sees the same ids in both."""
    bos_in_template = bool(tokenizer.bos_token) and text.startswith(tokenizer.bos_token)
    return tokenizer(text, add_special_tokens=not bos_in_template)["input_ids"]
