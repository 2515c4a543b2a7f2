"""Check the moderation dataset under data/moderation: format, labels, duplicates, near-duplicates, counts.

Why near-duplicates matter: the held-out split is chosen by a hash of each line, so two lines that differ by a word
or two would put the same example on both sides and overstate the held-out figures.

Usage: python scripts/check_moderation_data.py [DIR]   (exit status 1 when a problem is found)
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from pathlib import Path

CATEGORIES = ("sexual", "hate_and_discrimination", "violence_and_threats", "dangerous_and_criminal_content",
              "selfharm", "health", "financial", "law", "pii")
NEAR = 0.7  # Jaccard similarity of word sets at or above which two lines count as near-duplicates
_WORD = re.compile(r"\w+", re.UNICODE)


def read(directory: Path) -> tuple[list[tuple[str, int, str, list[str]]], list[str]]:
    rows, problems = [], []
    for path in sorted(directory.glob("*.jsonl")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            where = f"{path.name}:{number}"
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except ValueError as exc:
                problems.append(f"{where}: not JSON ({exc})")
                continue
            text, labels = item.get("text"), item.get("labels")
            if not isinstance(text, str) or not text.strip() or not isinstance(labels, list) or set(item) - {
                    "text", "labels"}:
                problems.append(f"{where}: want exactly {{'text': non-empty str, 'labels': list}}")
                continue
            unknown = [label for label in labels if label not in CATEGORIES]
            if unknown or len(set(labels)) != len(labels):
                problems.append(f"{where}: unknown or repeated labels {labels}")
                continue
            rows.append((where, number, text, labels))
    return rows, problems


def near_duplicates(rows: list[tuple[str, int, str, list[str]]]) -> list[str]:
    words = [frozenset(w.lower() for w in _WORD.findall(text)) for _, _, text, _ in rows]
    found = []
    for i in range(len(rows)):
        for j in range(i + 1, len(rows)):
            a, b = words[i], words[j]
            if len(a) >= 3 and len(b) >= 3 and len(a & b) / len(a | b) >= NEAR:
                found.append(f"{rows[i][0]} ~ {rows[j][0]}: {rows[i][2][:60]!r} ~ {rows[j][2][:60]!r}")
    return found


def main() -> int:
    directory = Path(sys.argv[1] if len(sys.argv) > 1 else "data/moderation")
    rows, problems = read(directory)
    seen: dict[str, str] = {}
    for where, _, text, _ in rows:
        key = " ".join(text.lower().split())
        if key in seen:
            problems.append(f"{where}: duplicate of {seen[key]}")
        seen.setdefault(key, where)
    problems += [f"near-duplicate: {p}" for p in near_duplicates(rows)]
    positives = Counter(label for *_, labels in rows for label in labels)
    multi = sum(1 for *_, labels in rows if len(labels) > 1)
    benign = sum(1 for *_, labels in rows if not labels)
    print(f"{len(rows)} lines, {multi} multi-label, {benign} with no label")
    for category in CATEGORIES:
        print(f"  {category:32} {positives[category]:5} positive, {len(rows) - positives[category]:5} negative")
    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
