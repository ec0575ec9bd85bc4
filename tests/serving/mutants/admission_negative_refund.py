"""Refunds max_tokens - used_tokens without the floor at zero: an answer longer than its reservation asks for a negative refund.

TokenBucket.refund refuses a negative amount, so settling such a request raises. Expected to fail:
the hidden reference comparison (usage above max_tokens).
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
    tokens.refund(user, max_tokens - used_tokens)
