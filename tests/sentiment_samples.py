"""Clearly positive and clearly negative sentences: a classifier head fitted on them in test setup separates them."""

from __future__ import annotations

__all__ = ["NEGATIVE", "POSITIVE"]

POSITIVE = ["I love this product, it works wonderfully.", "What a fantastic, delightful experience!",
            "The staff were kind and the food was excellent.", "Absolutely brilliant, I am so happy with it.",
            "Great value and superb quality, highly recommended.", "This made my day, thank you so much!",
            "A beautiful film with a heartwarming story.", "Everything went perfectly, I'm thrilled."]
NEGATIVE = ["I hate this product, it broke after one day.", "What a terrible, miserable experience.",
            "The staff were rude and the food was disgusting.", "Absolutely awful, I am so disappointed.",
            "Poor value and shoddy quality, avoid it.", "This ruined my day, never again.",
            "A boring film with a dreadful story.", "Everything went wrong, I'm furious."]
