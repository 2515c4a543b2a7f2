"""Append-only text from repeated decodings of a growing audio window (the realtime session's partial text).

The realtime protocol's ``transcription.text.delta`` events are appended by clients, never revised, while a
re-decoded window may change its last words as more audio arrives. So a word is said once two consecutive
decodings agree on it and on every word before it (the "local agreement" policy of streaming Whisper), and all the
rest on flush or end. Finished segments (ended well before the window's end, every word said) leave the window, so
it stays short and already-said text is never decoded again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["Piece", "Released", "WindowText"]

_PUNCTUATION = ".,!?;:\"'()[]{}…-"


@dataclass(frozen=True, slots=True)
class Piece:
    """One decoded segment: seconds from the window's start, and its words."""

    start: float
    end: float
    words: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Released:
    """Segments that left the window (window-relative seconds and the text said for each) and where it was cut."""

    segments: tuple[tuple[float, float, str], ...] = ()
    cut: float = 0.0  # seconds from the window's start


@dataclass(slots=True)
class WindowText:
    said: list[str] = field(default_factory=list)  # words of the current window already sent as deltas
    _previous: list[str] = field(default_factory=list)  # the previous decoding of the window

    def agreed(self, pieces: Sequence[Piece]) -> list[str]:
        """The words this decoding and the previous one agree on that were not said yet (now said)."""
        words = _words(pieces)
        common = _common_prefix(self._previous, words)
        self._previous = words
        new = words[len(self.said):common]
        self.said.extend(new)
        return new

    def rest(self, pieces: Sequence[Piece]) -> list[str]:
        """Everything these pieces hold beyond what was said (now said): the final word on them."""
        new = _words(pieces)[len(self.said):]
        self.said.extend(new)
        return new

    def release(self, pieces: Sequence[Piece], *, until: float | None, window: float) -> Released:
        """Let the leading pieces that ended by ``until`` and whose words are all said leave the window. ``until``
        None: every piece leaves (flush, end), the last taking any said words beyond them, and the window empties."""
        out: list[tuple[float, float, str]] = []
        taken, cut = 0, 0.0
        for i, piece in enumerate(pieces):
            if until is not None and (piece.end > until or taken + len(piece.words) > len(self.said)):
                break
            count = len(self.said) - taken if until is None and i == len(pieces) - 1 else len(piece.words)
            text = " ".join(self.said[taken:taken + count])
            if text:
                out.append((piece.start, piece.end, text))
            taken, cut = taken + count, piece.end
        if until is None:
            if taken < len(self.said):  # said words but no piece to hold them (a decoding that lost them)
                out.append((0.0, window, " ".join(self.said[taken:])))
            self.said.clear()
            self._previous.clear()
            return Released(tuple(out), window)
        del self.said[:taken]
        del self._previous[:taken]
        return Released(tuple(out), cut)


def _words(pieces: Sequence[Piece]) -> list[str]:
    return [word for piece in pieces for word in piece.words]


def _common_prefix(a: Sequence[str], b: Sequence[str]) -> int:
    """How many leading words agree, ignoring case and punctuation ("world," and "World." are one word)."""
    count = 0
    for x, y in zip(a, b, strict=False):
        if x.lower().strip(_PUNCTUATION) != y.lower().strip(_PUNCTUATION):
            break
        count += 1
    return count
