"""Build ``judge_labels.jsonl`` (the judge calibration set for the sample data) from ``seed-heldout.jsonl``.

    python data/sample/make_judge_labels.py      # rewrites data/sample/judge_labels.jsonl (deterministic)

The held-out pairs were never trained on (no model of the pipeline saw them), so a judge is not rated on
its own training data. The labels are made, not hand-rated: true seed pairs are "good"; four kinds of broken
pairs are "bad" (see README.md beside this file). tests/unit/test_calibration.py checks the committed file
is this output.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent
GOOD, PER_BAD_KIND = 12, 9
MAX_OUTPUT_CHARS = 1500  # keeps every judge prompt well inside the tiny local model's context
# Navigation, promotion and comment-section text: the rubric's score-1 signs of a scraped web page.
BOILERPLATE_HEAD = "Home | Forum | Downloads | Quick links | Advertisement\nSubscribe to our free newsletter!\n\n"
BOILERPLATE_TAIL = (
    "\n\nShare this post on Facebook and Twitter. 12 comments. Log in to reply.\n"
    "Sponsored: Cheap hosting, 50% off today."
)


def make_labels(seed: list[dict], rng: random.Random) -> list[dict]:
    pool = [r for r in seed if len(r["output"]) <= MAX_OUTPUT_CHARS]
    picked = rng.sample(pool, GOOD + 4 * PER_BAD_KIND)
    good, bad = picked[:GOOD], picked[GOOD:]
    rows = [
        {"instruction": r["instruction"], "output": r["output"], "label": "good", "kind": "true_pair"} for r in good
    ]
    groups = [bad[i * PER_BAD_KIND : (i + 1) * PER_BAD_KIND] for i in range(4)]
    # mismatched: each instruction with the answer to another seed question of the group
    rows += [
        {
            "instruction": r["instruction"],
            "output": groups[0][(i + 1) % PER_BAD_KIND]["output"],
            "label": "bad",
            "kind": "mismatched",
        }
        for i, r in enumerate(groups[0])
    ]
    for r in groups[1]:  # shuffled: the right words in a random order
        words = r["output"].split()
        rng.shuffle(words)
        rows.append({"instruction": r["instruction"], "output": " ".join(words), "label": "bad", "kind": "shuffled"})
    for r in groups[2]:  # truncated: the first fifth of the answer, cut mid-sentence
        words = r["output"].split()
        rows.append(
            {
                "instruction": r["instruction"],
                "output": " ".join(words[: max(3, len(words) // 5)]),
                "label": "bad",
                "kind": "truncated",
            }
        )
    rows += [
        {
            "instruction": r["instruction"],
            "output": BOILERPLATE_HEAD + r["output"] + BOILERPLATE_TAIL,
            "label": "bad",
            "kind": "web_boilerplate",
        }
        for r in groups[3]
    ]
    rng.shuffle(rows)
    return rows


def render(seed_path: Path = HERE / "seed-heldout.jsonl") -> str:
    seed = [json.loads(line) for line in seed_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in make_labels(seed, random.Random(0)))


if __name__ == "__main__":
    (HERE / "judge_labels.jsonl").write_text(render(), encoding="utf-8")
