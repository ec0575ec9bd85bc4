"""Only full windows: the last, shorter window (and any text shorter than one window) is dropped.

Looping while a whole window of ``size`` words still fits is the textbook sliding window, and it
silently loses the end of every document whose length is not a multiple of the step.

Expected to fail: the visible test, the hand-made cases and the comparison with the reference.
"""

# %% grade_id: chunk_spans
def chunk_spans(text, size, overlap):
    """Character spans of windows of ``size`` words sliding by ``size - overlap`` words."""
    if size < 1 or not 0 <= overlap < size:
        raise ValueError(f"need size >= 1 and 0 <= overlap < size, got size={size}, overlap={overlap}")
    words = [m.span() for m in re.finditer(r"\S+", text)]
    return [(words[first][0], words[first + size - 1][1]) for first in range(0, len(words) - size + 1, size - overlap)]
