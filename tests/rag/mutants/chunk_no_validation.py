"""No argument checks: a negative size or an overlap above the size quietly returns no chunks.

``range`` happens to refuse a zero step, so overlap == size still raises; an overlap larger than
the size gives a negative step and an empty list, and a corpus ingests as nothing.

Expected to fail: the hidden ValueError checks.
"""

# %% grade_id: chunk_spans
def chunk_spans(text, size, overlap):
    """Character spans of windows of ``size`` words sliding by ``size - overlap`` words."""
    words = [m.span() for m in re.finditer(r"\S+", text)]
    spans = []
    for first in range(0, len(words), size - overlap):
        last = min(first + size, len(words)) - 1
        spans.append((words[first][0], words[last][1]))
        if last == len(words) - 1:
            break
    return spans
