"""Words split only at spaces, tabs and newlines: a carriage return, form feed or non-breaking space stays inside a word.

"Spaces, tabs and newlines separate words" read literally gives the character class ``[^ \t\n]+``.
Text pasted from Windows (``\r\n``), PDFs (form feeds between pages) and HTML (``&nbsp;``) then
gets words that swallow those characters, and windows that count the wrong words.

Expected to fail: the comparison with the reference (hand-made texts with ``\r\n``, ``\f``, ``\v``
and Unicode spaces, and generated texts separated by them).
"""

# %% grade_id: chunk_spans
def chunk_spans(text, size, overlap):
    """Character spans of windows of ``size`` words sliding by ``size - overlap`` words."""
    if size < 1 or not 0 <= overlap < size:
        raise ValueError(f"need size >= 1 and 0 <= overlap < size, got size={size}, overlap={overlap}")
    words = [m.span() for m in re.finditer(r"[^ \t\n]+", text)]
    spans = []
    for first in range(0, len(words), size - overlap):
        last = min(first + size, len(words)) - 1
        spans.append((words[first][0], words[last][1]))
        if last == len(words) - 1:
            break
    return spans
