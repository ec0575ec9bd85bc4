"""Keeps admitting after a preemption: the blocks just freed go to a new request, and the
preempted one is preempted again next time (thrashing). Expected to fail: the reference comparison.
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
        for seq in self.ordered(self.waiting):
            if budget == 0 or len(self.running) >= self.config.max_seqs:
                break
            uncached = len(seq.tokens) - self.blocks.cached_tokens(seq)
            if not chunked and uncached > budget and plan.work:
                break
            if not self.admit(seq):
                break
            n = seq.remaining_prefill if not chunked else min(seq.remaining_prefill, budget)
            plan.work.append((seq, n))
            budget -= n
        return plan
