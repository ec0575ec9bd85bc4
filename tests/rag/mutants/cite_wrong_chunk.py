"""Citation n points at the n-th sentence's chunk, not the n-th chunk cited: after a repeat it is off.

With sentences from chunks a, a, b the markers read [1] [1] [2], but citation 2 names chunk a (the
second sentence's), so the reader is sent to a passage that does not say what the sentence says.

Expected to fail: the visible test, the comparison and the citation check on the corpus.
"""

# %% grade_id: cite
def cite(sentences):
    """The answer text with [n] after each sentence, and one Citation per chunk, numbered by first use."""
    numbers = {}
    parts = []
    for s in sentences:
        numbers.setdefault(s.chunk.chunk_id, len(numbers) + 1)
        parts.append(f"{s.text} [{numbers[s.chunk.chunk_id]}]")
    citations = [citation_for(n, sentences[n - 1].chunk) for n in range(1, len(numbers) + 1)]
    return " ".join(parts), citations
