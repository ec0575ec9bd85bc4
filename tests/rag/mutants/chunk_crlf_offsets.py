"""Words found line by line with ``splitlines()``, each line's offset advanced by its length + 1: spans drift after a ``\r\n``.

Going through the text a line at a time is natural, and ``+ 1`` for "the newline" is right for
``\n``; but ``splitlines()`` also ends a line at ``\r\n`` (two characters), so every span after
the first Windows line ending points one character early per ``\r\n``.

Expected to fail: the comparison with the reference (hand-made texts with ``\r\n`` line
endings, and generated texts separated by them).
"""

# %% grade_id: chunk_spans
def chunk_spans(text, size, overlap):
    """Character spans of windows of ``size`` words sliding by ``size - overlap`` words."""
    if size < 1 or not 0 <= overlap < size:
        raise ValueError(f"need size >= 1 and 0 <= overlap < size, got size={size}, overlap={overlap}")
    words, offset = [], 0
    for line in text.splitlines():
        words += [(offset + a, offset + b) for a, b in (m.span() for m in re.finditer(r"\S+", line))]
        offset += len(line) + 1
    spans = []
    for first in range(0, len(words), size - overlap):
        last = min(first + size, len(words)) - 1
        spans.append((words[first][0], words[last][1]))
        if last == len(words) - 1:
            break
    return spans
