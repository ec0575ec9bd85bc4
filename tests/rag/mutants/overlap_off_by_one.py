"""Windows step by size - overlap + 1 words: neighbouring windows share one word fewer than asked.

"Overlap 1 means the next window starts one past the end of the overlap" is an easy fencepost
slip; with overlap = size - 1 it skips every other start.

Expected to fail: the visible test and the comparison with the reference.
"""

# %% grade_id: chunk_spans
def chunk_spans(text, size, overlap):
    """Character spans of windows of ``size`` words sliding by ``size - overlap`` words."""
    if size < 1 or not 0 <= overlap < size:
        raise ValueError(f"need size >= 1 and 0 <= overlap < size, got size={size}, overlap={overlap}")
    words = [m.span() for m in re.finditer(r"\S+", text)]
    spans = []
    for first in range(0, len(words), size - overlap + 1):
        last = min(first + size, len(words)) - 1
        spans.append((words[first][0], words[last][1]))
        if last == len(words) - 1:
            break
    return spans
