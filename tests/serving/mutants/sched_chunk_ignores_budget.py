"""A new prompt is always prefilled whole ("chunking is for running sequences"): steps overrun
the budget. Expected to fail: the visible check (long takes 8) and the reference comparison.
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
            if budget <= 0 or len(self.running) >= self.config.max_seqs:
                break
            uncached = len(seq.tokens) - self.blocks.cached_tokens(seq)
            if not chunked and uncached > budget and plan.work:
                break
            if not self.admit(seq):
                break
            n = seq.remaining_prefill
            plan.work.append((seq, n))
            budget -= n
        return plan
