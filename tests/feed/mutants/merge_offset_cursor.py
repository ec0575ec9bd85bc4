"""Offset pagination: the cursor says "skip the first N" items.

Posts arriving between page reads then push items of page 1 onto page 2 again.

Correct while nothing changes; expected to fail: the visible walk with an arrival and the hidden
walks during which newer posts arrive.
"""

# %% grade_id: merge
def merge(sources, *, limit, cursor=None):
    """Merge sources newest first, each post once; the cursor is the number of items already shown."""
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    seen = {}
    for source in sources:
        for item in source:
            seen.setdefault(item.post_id, item)
    ordered = sorted(seen.values(), key=lambda i: i.order, reverse=True)
    offset = int(cursor) if cursor else 0
    page = ordered[offset : offset + limit]
    return Page(page, str(offset + limit) if len(ordered) > offset + limit else None)
