"""A request refused for tokens still uses up one of the user's requests.

Expected to fail: the visible check (4 requests left) and the reference comparison.
"""

# %% grade_id: admission
def admit(requests, tokens, user, prompt_tokens, max_tokens):
    if not requests.acquire(user, 1).allowed:
        return False
    return tokens.acquire(user, prompt_tokens + max_tokens).allowed


def settle(tokens, user, max_tokens, used_tokens):
    tokens.refund(user, max(0, max_tokens - used_tokens))
