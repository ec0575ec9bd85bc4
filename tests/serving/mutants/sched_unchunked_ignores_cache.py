"""Without chunked prefill, holds back a prompt whose whole length exceeds the budget left, though its cached prefix costs nothing.

A prompt that shares a long system prompt waits for the batch to drain instead of joining it for
its few uncached tokens. Expected to fail: the hidden reference comparison (prompts with a cached
prefix, chunking off).
"""

# %% grade_id: scheduler
class MyScheduler(SchedulerBase):
    def schedule(self):
        plan, budget = StepPlan(), self.config.token_budget
        chunked = self.config.chunked_prefill
        for seq in self.ordered(self.running):
            n = min(seq.remaining_prefill, budget)
            if n == 0 or (not chunked and n < seq.remaining_prefill):
                break
            if not self.reserve(seq, n, plan):
                break
            plan.work.append((seq, n))
            budget -= n
        if plan.preempted:
            return plan
        for seq in self.ordered(self.waiting):
            if budget == 0 or len(self.running) >= self.config.max_seqs:
                break
            if not chunked and len(seq.tokens) > budget and plan.work:
                break
            if not self.admit(seq):
                break
            n = seq.remaining_prefill if not chunked else min(seq.remaining_prefill, budget)
            plan.work.append((seq, n))
            budget -= n
        return plan
