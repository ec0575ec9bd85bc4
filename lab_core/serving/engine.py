"""The serving engine: a model, a paged KV cache, a scheduler, and a loop of steps.

``LLMEngine.step()`` asks the scheduler for a plan, runs every planned token of every sequence
through the model in one flat batch (prefill chunks and decodes together), samples one token for
each sequence whose prompt is fully computed, streams it, and retires finished sequences. Each
step's shape and duration is kept in ``step_log``: the fleet simulator's CPU step-time model is
fitted from it.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch

from lab_core.llm.config import ModelConfig, get_config
from lab_core.llm.model import Transformer, build_model
from lab_core.llm.tokenizer import EOS, ByteTokenizer, Tokenizer
from lab_core.serving.attention import PagedAttend, PagedKVCache, SeqSlice
from lab_core.serving.blocks import BlockAllocator, BlockManager
from lab_core.serving.protocol import FREE, EngineStats, SamplingParams, TokenEvent
from lab_core.serving.scheduler import Scheduler, SchedulerBase, SchedulerConfig, StepPlan
from lab_core.serving.sequence import Sequence, Status


@dataclass(frozen=True)
class EngineConfig:
    """Everything that shapes one engine replica."""

    model: str | ModelConfig = "tiny"
    block_size: int = 16
    num_blocks: int = 1024
    token_budget: int = 256
    max_seqs: int = 64
    chunked_prefill: bool = True
    prefix_caching: bool = True
    policy: str = "fcfs"
    device: str = "cpu"
    seed: int = 0

    def scheduler_config(self) -> SchedulerConfig:
        """The scheduler's part."""
        return SchedulerConfig(self.token_budget, self.max_seqs, self.chunked_prefill, self.policy)


@dataclass(frozen=True)
class StepRecord:
    """One step's shape and duration (seconds)."""

    start: float
    seconds: float
    prefill_tokens: int
    decode_batch: int
    sum_context: int
    num_seqs: int


@dataclass
class Completion:
    """A finished request, for callers that do not stream."""

    request_id: str
    prompt_tokens: int
    token_ids: list[int]
    text: str
    finish_reason: str
    arrival: float
    first_token_time: float
    finish_time: float
    preemptions: int = 0
    cached_tokens: int = 0

    @property
    def ttft(self) -> float:
        """Seconds from arrival to the first token."""
        return self.first_token_time - self.arrival

    @property
    def tpot(self) -> float:
        """Mean seconds per output token after the first (0 for a one-token answer)."""
        n = len(self.token_ids)
        return (self.finish_time - self.first_token_time) / (n - 1) if n > 1 else 0.0


def sample(logits: torch.Tensor, seqs: list[Sequence], generators: dict[str, torch.Generator]) -> list[int]:
    """One token per row: argmax where temperature is 0, else a draw from softmax(logits / T)
    with the request's own generator (so a seeded request repeats exactly)."""
    tokens = logits.argmax(-1).tolist()
    for row, seq in enumerate(seqs):
        t = seq.params.temperature
        if t > 0:
            probs = torch.softmax(logits[row].float() / t, -1)
            tokens[row] = int(torch.multinomial(probs.cpu(), 1, generator=generators.get(seq.request_id)))
    return tokens


class LLMEngine:
    """One replica: ``add_request`` then ``step`` until ``has_work`` is False, or ``generate``."""

    def __init__(
        self,
        config: EngineConfig | None = None,
        *,
        model: Transformer | None = None,
        clock: Callable[[], float] = time.perf_counter,
        block_manager: type[BlockAllocator] = BlockManager,
        scheduler: type[SchedulerBase] = Scheduler,
        tokenizer: Tokenizer | None = None,
    ) -> None:
        """``block_manager`` and ``scheduler`` are the classes the engine instantiates (the
        notebook's and the dashboard's seam for the student's own); ``tokenizer`` is the model's
        (bytes by default; a trained model from Lab 08's registry brings its BPE)."""
        self.config = config or EngineConfig()
        cfg: ModelConfig = model.cfg if model is not None else get_config(self.config.model)
        dtype = torch.bfloat16 if self.config.device.startswith("cuda") else torch.float32
        self.model = (
            model
            if model is not None
            else build_model(cfg, seed=self.config.seed, device=self.config.device, dtype=dtype)
        )
        self.model_config = cfg
        self.device = torch.device(self.config.device)
        self.tokenizer = tokenizer or ByteTokenizer()
        self.blocks = block_manager(
            self.config.num_blocks, self.config.block_size, prefix_caching=self.config.prefix_caching
        )
        self.cache = PagedKVCache(
            cfg,
            self.config.num_blocks,
            self.config.block_size,
            device=self.device,
            dtype=next(self.model.parameters()).dtype,
        )
        self.scheduler = scheduler(self.blocks, self.config.scheduler_config())
        self.clock = clock
        self.sequences: dict[str, Sequence] = {}
        self.step_log: list[StepRecord] = []
        self._generators: dict[str, torch.Generator] = {}
        self._ids = itertools.count()

    @property
    def max_context(self) -> int:
        """Longest prompt plus output one request may have."""
        return min(self.model_config.max_seq_len, self.config.num_blocks * self.config.block_size)

    def add_request(
        self,
        prompt: str | list[int],
        params: SamplingParams | None = None,
        *,
        request_id: str | None = None,
        priority: int = FREE,
        on_token: Callable[[TokenEvent], None] | None = None,
        arrival: float | None = None,
    ) -> str:
        """Queue a request; returns its id. ValueError (naming the field) for a request the engine
        could never serve: empty prompt, bad ``max_tokens``/``temperature``, too long in total."""
        params = params or SamplingParams()
        ids = self.tokenizer.encode(prompt, bos=True) if isinstance(prompt, str) else list(prompt)
        if len(ids) == 0 or (isinstance(prompt, str) and not prompt):
            raise ValueError("prompt must not be empty")
        if any(not isinstance(t, int) or not 0 <= t < self.model_config.vocab_size for t in ids):
            raise ValueError(f"prompt token ids must be integers in 0..{self.model_config.vocab_size - 1}")
        if isinstance(params.max_tokens, bool) or not isinstance(params.max_tokens, int) or params.max_tokens < 1:
            raise ValueError(f"max_tokens must be a positive integer, got {params.max_tokens!r}")
        if not params.temperature >= 0:
            raise ValueError(f"temperature must be >= 0, got {params.temperature!r}")
        if len(ids) + params.max_tokens > self.max_context:
            raise ValueError(
                f"prompt ({len(ids)} tokens) + max_tokens ({params.max_tokens}) exceeds the "
                f"context length {self.max_context}"
            )
        request_id = request_id or f"req-{next(self._ids)}"
        if request_id in self.sequences:
            raise ValueError(f"request_id {request_id!r} is already in use")
        seq = Sequence(
            request_id,
            ids,
            params,
            priority,
            self.clock() if arrival is None else arrival,
            on_token,
            token_bytes=self.tokenizer.token_bytes,
        )
        if params.temperature > 0:
            gen = torch.Generator()
            gen.manual_seed(params.seed if params.seed is not None else self.config.seed + hash(request_id) % 2**31)
            self._generators[request_id] = gen
        self.sequences[request_id] = seq
        self.scheduler.add(seq)
        return request_id

    def abort(self, request_id: str) -> bool:
        """Stop a request and free its blocks now; False when unknown or already finished."""
        seq = self.sequences.get(request_id)
        if seq is None or seq.status is Status.FINISHED:
            return False
        self._finish(seq, "abort", emit=True)
        return True

    def extract_kv(self, request_id: str) -> torch.Tensor:
        """The computed KV of a running request as one tensor ``[layers, 2, tokens, kv_heads,
        head_dim]`` (what a prefill worker hands to a decode worker)."""
        seq = self.sequences[request_id]
        slots = self._slots(seq, range(seq.computed))
        return torch.stack(
            [torch.stack([k[slots], v[slots]]) for k, v in map(self.cache.flat, range(len(self.cache.k)))]
        )

    def add_prefilled(
        self,
        prompt: list[int],
        first_token: int,
        kv: torch.Tensor,
        params: SamplingParams,
        *,
        request_id: str,
        priority: int = FREE,
        arrival: float | None = None,
        on_token: Callable[[TokenEvent], None] | None = None,
    ) -> None:
        """Take over a request another worker prefilled: install its prompt's KV (``extract_kv``'s
        layout) and continue decoding after ``first_token``. OutOfBlocks when the cache is full."""
        self.add_request(prompt, params, request_id=request_id, priority=priority, on_token=on_token, arrival=arrival)
        seq = self.sequences[request_id]
        self.scheduler.waiting.remove(seq)
        seq.tokens.append(first_token)
        seq.append_text(first_token)
        seq.first_token_time = seq.first_scheduled = self.clock()
        try:
            self.blocks.grow(seq, len(seq.tokens))
        except Exception:
            del self.sequences[request_id]
            raise
        slots = self._slots(seq, range(len(prompt)))
        for layer in range(kv.shape[0]):
            k, v = self.cache.flat(layer)
            k[slots] = kv[layer, 0].to(k.dtype)
            v[slots] = kv[layer, 1].to(v.dtype)
        seq.computed = len(prompt)
        seq.status = Status.RUNNING
        self.scheduler.running.append(seq)
        self.blocks.commit(seq)

    def _slots(self, seq: Sequence, positions: range) -> torch.Tensor:
        bs = self.config.block_size
        return torch.tensor(
            [seq.block_table[p // bs] * bs + p % bs for p in positions], dtype=torch.long, device=self.device
        )

    def has_work(self) -> bool:
        """True while any request waits or runs."""
        return self.scheduler.has_work()

    def stats(self) -> EngineStats:
        """Current load."""
        return EngineStats(
            running=len(self.scheduler.running),
            waiting=len(self.scheduler.waiting),
            kv_used_blocks=self.blocks.num_used,
            kv_total_blocks=self.blocks.num_blocks,
            preemptions=self.scheduler.preemptions,
            prefix_hit_tokens=self.scheduler.prefix_hit_tokens,
            max_context=self.max_context,
        )

    def _finish(self, seq: Sequence, reason: str, *, emit: bool) -> None:
        self.scheduler.remove(seq)
        seq.finish_reason, seq.finish_time = reason, self.clock()
        self._generators.pop(seq.request_id, None)
        if emit and seq.on_token is not None:
            seq.on_token(TokenEvent(seq.request_id, -1, "", len(seq.output), seq.finish_time, reason, len(seq.prompt)))

    def _stop_reason(self, seq: Sequence, token: int) -> str | None:
        if token == EOS and not seq.params.ignore_eos:
            return "stop"
        if any(seq.text.endswith(s) for s in seq.params.stop if s):
            return "stop"
        if len(seq.output) >= seq.params.max_tokens:
            return "length"
        return None

    @torch.inference_mode()
    def _run(self, plan: StepPlan) -> list[int]:
        ids: list[int] = []
        positions: list[int] = []
        slices: list[SeqSlice] = []
        rows: list[int] = []
        for seq, n in plan.work:
            start = seq.computed
            slices.append(SeqSlice(len(ids), n, start + n, seq.block_table))
            ids.extend(seq.tokens[start : start + n])
            positions.extend(range(start, start + n))
            rows.append(len(ids) - 1)
        attend = PagedAttend(self.cache, slices, self.device)
        logits = self.model.forward_flat(
            torch.tensor(ids, device=self.device),
            torch.tensor(positions, device=self.device),
            attend,
            torch.tensor(rows, device=self.device),
        )
        return sample(logits, [s for s, _ in plan.work], self._generators)

    def step(self) -> list[TokenEvent]:
        """Run one scheduler step; returns the tokens it produced (finished events included)."""
        plan = self.scheduler.schedule()
        if not plan.work:
            return []
        start = self.clock()
        record = (plan.prefill_tokens, plan.decode_batch, sum(seq.computed + n for seq, n in plan.work if n == 1))
        tokens = self._run(plan)
        now = self.clock()
        self.step_log.append(StepRecord(start, now - start, *record, len(plan.work)))
        events: list[TokenEvent] = []
        for (seq, n), token in zip(plan.work, tokens):
            if seq.first_scheduled is None:
                seq.first_scheduled = start
            seq.computed += n
            self.blocks.commit(seq)
            if seq.computed < len(seq.tokens):
                continue
            seq.tokens.append(token)
            if seq.first_token_time is None:
                seq.first_token_time = now
            seq.token_times.append(now)
            piece = seq.append_text(token)
            reason = self._stop_reason(seq, token)
            event = TokenEvent(seq.request_id, token, piece, len(seq.output) - 1, now, reason, len(seq.prompt))
            events.append(event)
            if seq.on_token is not None:
                seq.on_token(event)
            if reason is not None:
                self._finish(seq, reason, emit=False)
        return events

    def generate(
        self,
        prompts: Iterable[str | list[int]],
        params: SamplingParams | None = None,
        *,
        progress: Callable[[int], None] | None = None,
    ) -> list[Completion]:
        """Serve every prompt concurrently to completion; results in prompt order."""
        ids = [self.add_request(p, params) for p in prompts]
        while self.has_work():
            for event in self.step():
                if event.finished and progress is not None:
                    progress(1)
        return [self.completion(i) for i in ids]

    def completion(self, request_id: str) -> Completion:
        """The finished request ``request_id``."""
        seq = self.sequences[request_id]
        if seq.status is not Status.FINISHED:
            raise ValueError(f"request {request_id} has not finished")
        return Completion(
            request_id,
            len(seq.prompt),
            seq.output,
            seq.text,
            seq.finish_reason or "abort",
            seq.arrival,
            seq.first_token_time or seq.finish_time or seq.arrival,
            seq.finish_time or seq.arrival,
            seq.preemptions,
            seq.cached_tokens,
        )
