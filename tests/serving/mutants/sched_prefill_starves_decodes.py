"""Admits new prompts before serving the running sequences: decodes get what prefill leaves.

With a long prompt arriving, the streams in flight stall for its whole prefill. Expected to fail:
the visible check (long continues first), the reference comparison.
"""

# %% grade_id: scheduler
class MyScheduler(SchedulerBase):
    def schedule(self):
        plan, budget = StepPlan(), self.config.token_budget
        chunked = self.config.chunked_prefill
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
        planned = {id(s) for s, _ in plan.work}
        for seq in self.ordered(self.running):
            if id(seq) in planned:
                continue
            n = min(seq.remaining_prefill, budget)
            if n == 0 or (not chunked and n < seq.remaining_prefill):
                break
            if not self.reserve(seq, n, plan):
                break
            plan.work.append((seq, n))
            budget -= n
        return plan
