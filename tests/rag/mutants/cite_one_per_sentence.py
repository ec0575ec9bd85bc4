"""A new citation number for every sentence, even when two sentences come from the same chunk.

Every citation is still correct (check_citations is satisfied), but the reader gets [1] and [2]
for one passage and the citation list repeats chunks.

Expected to fail: the visible test and the comparison with the reference; the corpus check passes.
"""

# %% grade_id: cite
def cite(sentences):
    """The answer text with [n] after each sentence, and one Citation per chunk, numbered by first use."""
    parts = [f"{s.text} [{n}]" for n, s in enumerate(sentences, start=1)]
    citations = [citation_for(n, s.chunk) for n, s in enumerate(sentences, start=1)]
    return " ".join(parts), citations
