"""Reserves max_tokens and never gives back what the answer did not use.

Expected to fail: the visible check (1,890 tokens left) and the reference comparison.
"""

# %% grade_id: admission
def admit(requests, tokens, user, prompt_tokens, max_tokens):
    if not requests.acquire(user, 1).allowed:
        return False
    if not tokens.acquire(user, prompt_tokens + max_tokens).allowed:
        requests.refund(user, 1)
        return False
    return True


def settle(tokens, user, max_tokens, used_tokens):
    pass
