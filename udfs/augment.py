"""Self-augmentation, the pure part: the backward model's prompt and the clean-up of what it writes."""

from __future__ import annotations

from dataclasses import dataclass

from udfs.prompts import PromptTemplate, messages


@dataclass(frozen=True)
class Instruction:
    text: str | None
    status: str  # "ok" | "dropped"
    reason: str | None


def backward_conversation(template: PromptTemplate, output: str) -> list[dict[str, str]]:
    """M_yx's conversation: the segment is the "output" it must write an instruction for.

    Training the backward model renders the same template (training.data), so M_yx sees the format it learnt.
    """
    return messages(template.render(output=output))


def clean_instruction(raw: str, finish_reason: str, max_chars: int = 2000) -> Instruction:
    """Validate a generated instruction; a bad one is dropped with a reason, never silently fixed."""
    text = (raw or "").strip()
    if not text:
        return Instruction(None, "dropped", "empty_instruction")
    if finish_reason == "length":
        return Instruction(None, "dropped", "instruction_truncated")
    if len(text) > max_chars:
        return Instruction(None, "dropped", "instruction_too_long")
    return Instruction(text, "ok", None)
