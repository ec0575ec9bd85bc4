"""Boundary error at the cursor: ``>`` instead of ``>=`` repeats the last item of each page.

The last item of each page comes back as the first of the next (and a page of one never advances).

Expected to fail: the visible test and the hidden walks.
"""

# %% grade_id: merge
def merge(sources, *, limit, cursor=None):
    """Merge sources newest first, each post once, from the cursor on."""
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    after = decode_cursor(cursor) if cursor else None
    seen = {}
    for source in sources:
        for item in source:
            if after is not None and item.order > after:
                continue
            seen.setdefault(item.post_id, item)
    ordered = sorted(seen.values(), key=lambda i: i.order, reverse=True)
    page = ordered[:limit]
    return Page(page, encode_cursor(page[-1]) if len(ordered) > limit else None)
