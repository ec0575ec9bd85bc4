"""A cursor that remembers only the last item's time, skipping posts made in the same instant.

"Older than created_at" drops the posts made in the same instant as the last item of the page
but after it in the order.

Expected to fail: the visible test (posts 3 and 2 share a time; 2 is skipped) and the hidden walks,
which generate many posts with equal times.
"""

# %% grade_id: merge
def merge(sources, *, limit, cursor=None):
    """Merge sources newest first, each post once, older than the cursor's time."""
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    after = decode_cursor(cursor)[0] if cursor else None
    seen = {}
    for source in sources:
        for item in source:
            if after is not None and item.created_at >= after:
                continue
            seen.setdefault(item.post_id, item)
    ordered = sorted(seen.values(), key=lambda i: i.order, reverse=True)
    page = ordered[:limit]
    return Page(page, encode_cursor(page[-1]) if len(ordered) > limit else None)
