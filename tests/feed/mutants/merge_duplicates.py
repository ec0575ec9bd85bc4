"""Merge that keeps every copy of a post: a post both pushed and pulled shows up twice.

Sorting the concatenated sources is the obvious merge, but a post can sit in two sources (a user
who crossed the celebrity threshold, a follow racing a fan-out). Expected to fail: the visible
merge test (post 3 is in both sources) and the hidden comparison with the reference.
"""

# %% grade_id: merge
def merge(sources, *, limit, cursor=None):
    """Merge sources newest first, strictly after ``cursor``; a Page with next_cursor."""
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    after = decode_cursor(cursor) if cursor else None
    items = [item for source in sources for item in source if after is None or item.order < after]
    ordered = sorted(items, key=lambda i: i.order, reverse=True)
    page = ordered[:limit]
    return Page(page, encode_cursor(page[-1]) if len(ordered) > limit else None)
