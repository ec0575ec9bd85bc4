"""The demo pre-training corpus: English prose about computer systems, with the mess of a web crawl.

It ships as code, not data: a seeded generator writes the same documents every time. Prose comes
from topic vocabularies and sentence templates, so a small model can learn it (it has grammar,
recurring phrases and topic structure) yet no two documents are alike. A share of the records
carry what a crawl brings and the cleaning pipeline must remove: HTML tags and entities, runs of
whitespace, control and zero-width characters, decomposed Unicode, boilerplate lines ("Click here
to subscribe"), very short pages, exact duplicates and near-duplicates. ``DemoCorpus.injected``
counts each kind, so tests can check the pipeline's statistics against the truth.
"""

from __future__ import annotations

import json
import random
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

TOPICS: dict[str, dict[str, list[str]]] = {
    "caching": {
        "title": [
            "Caching without tears",
            "Why the cache is never simple",
            "Notes on cache design",
            "What we learned from our cache",
        ],
        "parts": [
            "the cache",
            "the origin database",
            "the eviction policy",
            "the write path",
            "the cache key",
            "the read replica",
            "the warm-up job",
        ],
        "metrics": ["hit rate", "p99 latency", "memory use", "origin load"],
        "problems": ["a thundering herd", "stale reads", "a cold start", "hot keys", "cache stampedes after a deploy"],
        "fixes": [
            "request coalescing",
            "a short expiry with random jitter",
            "a second cache tier",
            "write-through updates",
            "negative caching",
        ],
        "facts": [
            "A cache trades memory for time: it keeps recent answers so that the next request does not pay for them again.",
            "The hardest part of caching is invalidation, because every copy of the data must learn that it changed.",
            "An LRU policy evicts the entry that was used least recently, which works well when the working set fits in memory.",
            "When many clients miss the same key at once, they all go to the database together and make the problem worse.",
            "A hit rate of ninety percent sounds good until you notice that the misses are the slow requests.",
            "Caches hide latency, but they also hide bugs, since stale data can look correct for hours.",
        ],
    },
    "databases": {
        "title": [
            "Choosing a database",
            "How replication really works",
            "Living with a primary and replicas",
            "Indexes, logs and the write path",
        ],
        "parts": [
            "the primary",
            "each replica",
            "the write-ahead log",
            "the query planner",
            "the connection pool",
            "the index",
            "the backup job",
        ],
        "metrics": ["replication lag", "query latency", "disk usage", "lock wait time"],
        "problems": [
            "a long-running transaction",
            "replication lag",
            "a missing index",
            "too many open connections",
            "a split brain",
        ],
        "fixes": [
            "a covering index",
            "a connection pooler",
            "read-your-writes routing",
            "smaller transactions",
            "automatic failover with fencing",
        ],
        "facts": [
            "Every change is first written to the log, so the database can replay it after a crash.",
            "A replica applies the log of the primary, which means it is always a little behind.",
            "An index makes reads fast and writes slower, because each insert must update it as well.",
            "Strong consistency is easy on one machine and expensive across many, since every write must wait for a quorum.",
            "The query planner guesses the cost of each plan from statistics, and old statistics lead to bad plans.",
            "A backup that has never been restored is only a hope, not a backup.",
        ],
    },
    "queues": {
        "title": [
            "Queues keep the system calm",
            "Designing with message queues",
            "Back pressure in practice",
            "At least once, exactly never",
        ],
        "parts": [
            "the broker",
            "the producer",
            "each consumer",
            "the dead letter queue",
            "the partition",
            "the offset store",
            "the retry policy",
        ],
        "metrics": ["queue depth", "consumer lag", "end-to-end latency", "messages per second"],
        "problems": [
            "a poison message",
            "duplicate delivery",
            "an unbounded queue",
            "a slow consumer",
            "out-of-order events",
        ],
        "fixes": [
            "idempotent handlers",
            "a dead letter queue",
            "bounded retries with backoff",
            "more partitions",
            "back pressure on the producer",
        ],
        "facts": [
            "A queue lets the producer move on while the consumer works at its own pace.",
            "Most brokers promise at-least-once delivery, so every handler must be safe to run twice.",
            "Order is only kept inside one partition, which is why the partition key matters so much.",
            "An unbounded queue does not remove overload; it only turns it into latency and memory use.",
            "When consumer lag keeps growing, the system is receiving more work than it can finish.",
            "A message that always fails should go to a separate queue instead of blocking the others.",
        ],
    },
    "load balancing": {
        "title": [
            "Spreading the load",
            "What a load balancer decides",
            "Round robin is not enough",
            "Health checks and slow servers",
        ],
        "parts": [
            "the load balancer",
            "each backend",
            "the health check",
            "the routing table",
            "the connection draining step",
            "the autoscaler",
        ],
        "metrics": ["tail latency", "error rate", "CPU use per backend", "active connections"],
        "problems": ["a slow backend", "uneven load", "sticky sessions", "a retry storm", "a flapping health check"],
        "fixes": [
            "least-connections routing",
            "the power of two random choices",
            "outlier ejection",
            "retry budgets",
            "connection draining",
        ],
        "facts": [
            "A load balancer spreads requests over many servers so that no single one becomes the bottleneck.",
            "Picking two servers at random and sending the request to the less busy one works surprisingly well.",
            "A server that answers health checks but serves requests slowly is worse than a server that is down.",
            "Retries help with rare failures and hurt badly when every client retries at the same moment.",
            "Sticky sessions are convenient, but they make it hard to move load away from a busy server.",
            "Draining connections before a deploy lets requests in flight finish instead of failing.",
        ],
    },
    "rate limiting": {
        "title": ["Rate limits for a public API", "Token buckets explained", "Fair use at scale", "Saying no politely"],
        "parts": [
            "the rate limiter",
            "the token bucket",
            "the counter store",
            "the rules engine",
            "the API gateway",
            "the sliding window",
        ],
        "metrics": ["rejected requests", "requests per minute", "limiter latency", "counter memory"],
        "problems": [
            "a burst of traffic",
            "a single noisy client",
            "clock skew between servers",
            "counters that drift",
            "a shared limit that is too strict",
        ],
        "fixes": [
            "a token bucket per user",
            "a sliding window counter",
            "a Retry-After header",
            "separate limits per endpoint",
            "counters kept in Redis",
        ],
        "facts": [
            "A token bucket refills at a steady rate and lets a client spend saved tokens in a short burst.",
            "A fixed window counter is simple, but it allows twice the limit across the edge of two windows.",
            "When a request is rejected, the server should say when to try again instead of leaving the client to guess.",
            "Limits protect the service from its users and also protect users from each other.",
            "Keeping counters in one shared store makes the limit global, at the cost of one more network call.",
            "A good limit is generous for normal use and strict only for abuse.",
        ],
    },
    "sharding": {
        "title": [
            "When one machine is not enough",
            "Sharding by key",
            "Consistent hashing in practice",
            "Moving data without downtime",
        ],
        "parts": ["the shard map", "each shard", "the router", "the rebalancer", "the hash ring", "the migration job"],
        "metrics": ["rows per shard", "cross-shard queries", "rebalance time", "hot shard load"],
        "problems": ["a hot shard", "cross-shard joins", "an uneven key space", "a slow rebalance", "a celebrity user"],
        "fixes": [
            "consistent hashing",
            "virtual nodes",
            "a better shard key",
            "splitting hot ranges",
            "double writes during migration",
        ],
        "facts": [
            "Sharding splits the data by key so that each machine holds only a part of it.",
            "With consistent hashing, adding a machine moves only a small share of the keys.",
            "A query that must touch every shard is only as fast as the slowest one.",
            "The shard key decides almost everything, and changing it later is very expensive.",
            "Virtual nodes give each machine many small ranges, which evens out the load.",
            "A celebrity account can overload one shard no matter how good the hash function is.",
        ],
    },
    "observability": {
        "title": [
            "Knowing what the system does",
            "Metrics, logs and traces",
            "Alerting on symptoms",
            "A dashboard that helps at night",
        ],
        "parts": [
            "the metrics pipeline",
            "the tracing library",
            "the log shipper",
            "the alert rule",
            "the dashboard",
            "the on-call rotation",
        ],
        "metrics": ["alert volume", "time to detect", "time to recover", "trace sampling rate"],
        "problems": [
            "alert fatigue",
            "a missing trace",
            "high cardinality labels",
            "silent failures",
            "a dashboard nobody reads",
        ],
        "fixes": [
            "alerts on user-facing symptoms",
            "tail-based sampling",
            "service level objectives",
            "structured logs",
            "fewer but better alerts",
        ],
        "facts": [
            "Metrics tell you that something is wrong, traces tell you where, and logs tell you why.",
            "An alert should wake someone only when users are affected and a person can do something about it.",
            "Averages hide the slow requests, so latency is better described by percentiles.",
            "A trace follows one request through every service it touches, which makes slow hops easy to see.",
            "Labels with too many values can make the metrics store slower than the system it watches.",
            "Error budgets turn reliability into a number that product and engineering can agree on.",
        ],
    },
    "training": {
        "title": [
            "Training a model on many GPUs",
            "Data parallel training explained",
            "Checkpoints save the week",
            "Where the memory goes during training",
        ],
        "parts": [
            "the data loader",
            "the optimizer",
            "each GPU",
            "the gradient all-reduce",
            "the checkpoint writer",
            "the learning rate schedule",
            "the tokenizer",
        ],
        "metrics": ["tokens per second", "training loss", "GPU memory", "step time"],
        "problems": [
            "a loss spike",
            "an out-of-memory error",
            "a failed node",
            "a slow data loader",
            "diverging gradients",
        ],
        "fixes": [
            "gradient clipping",
            "activation checkpointing",
            "sharded optimizer states",
            "asynchronous checkpoints",
            "a learning rate warm-up",
        ],
        "facts": [
            "In data parallel training every GPU holds a copy of the model and sees a different slice of the batch.",
            "After the backward pass the gradients are averaged across GPUs, so every copy takes the same step.",
            "The optimizer states of Adam need twice as much memory as the weights themselves.",
            "Sharding the weights, gradients and optimizer states lets a model grow beyond the memory of one GPU.",
            "A long run will see hardware failures, so it must save checkpoints and resume from them.",
            "Mixed precision keeps a full precision copy of the weights while most of the math runs in bfloat16.",
        ],
    },
    "serving": {
        "title": [
            "Serving a language model",
            "Batching requests on a GPU",
            "Why tokens per second matters",
            "Latency budgets for inference",
        ],
        "parts": [
            "the inference server",
            "the request queue",
            "the KV cache",
            "the scheduler",
            "the prefill step",
            "the decode loop",
            "the router",
        ],
        "metrics": ["time to first token", "tokens per second", "queue wait", "GPU utilisation"],
        "problems": [
            "a long prompt",
            "a full KV cache",
            "head-of-line blocking",
            "a traffic spike",
            "uneven request lengths",
        ],
        "fixes": [
            "continuous batching",
            "paged attention",
            "separate prefill and decode pools",
            "priority queues",
            "speculative decoding",
        ],
        "facts": [
            "Decoding produces one token at a time, so the GPU is often waiting on memory rather than math.",
            "Continuous batching adds new requests to the batch as soon as old ones finish.",
            "The KV cache stores the keys and values of earlier tokens so they are not computed again.",
            "A long prompt makes the first token slow, while a long answer makes the whole response slow.",
            "Streaming the answer lets the user start reading before the model has finished.",
            "A naïve server handles one request at a time and leaves most of the GPU idle.",
        ],
    },
    "storage": {
        "title": [
            "Objects, blocks and files",
            "How object storage stays durable",
            "Designing a blob store",
            "Erasure codes in plain words",
        ],
        "parts": [
            "the metadata service",
            "each storage node",
            "the replication job",
            "the garbage collector",
            "the upload API",
            "the erasure coder",
        ],
        "metrics": ["durability", "upload throughput", "storage cost per terabyte", "repair time"],
        "problems": ["a failed disk", "a lost metadata record", "small files", "a partial upload", "silent bit rot"],
        "fixes": [
            "three replicas",
            "erasure coding",
            "checksums on every read",
            "multipart uploads",
            "background scrubbing",
        ],
        "facts": [
            "Object storage keeps each object whole and addresses it by key instead of by block.",
            "Checksums catch silent corruption, which is more common on large fleets than most people expect.",
            "Erasure coding stores data with less overhead than three full copies and survives the same failures.",
            "Small files are expensive, since each one costs a metadata record no matter how few bytes it holds.",
            "A write is only durable once enough nodes have confirmed it.",
            "Scrubbing reads every object in the background and repairs the ones that have rotted.",
        ],
    },
}

_TEMPLATES = [
    "When {problem} happens, {fix} is usually the first thing to try.",
    "Teams often measure {metric} before they change {part}.",
    "If {metric} rises above its usual level, the on-call engineer looks at {part} first.",
    "{Fix} helps because it takes load away from {part}.",
    "In our tests, {part} handled {number} requests per second on a single machine.",
    "A common mistake is to ignore {problem} until {metric} gets worse.",
    "We added {fix} last {period}, and {metric} improved by {pct} percent.",
    "The design has three parts: {part}, {part2} and {part3}.",
    "Each request goes through {part} before it reaches {part2}.",
    "It is easy to forget that {part} can fail too.",
    "The trade-off is simple: {fix} adds some complexity but lowers {metric}.",
    "Most of the time {part} is fine, but {problem} can take it down in minutes.",
    "Before you add {fix}, check whether {part} is really the bottleneck.",
    "A small change to {part} cut {metric} in half for one of our customers.",
    "We watch {metric} and {metric2} on the same dashboard, because they tend to move together.",
    "{Problem} is rare, yet it caused {number} minutes of downtime last {period}.",
    "The simplest fix for {problem} is {fix}.",
    "Nobody notices {part} until it breaks, and then everybody does.",
    "With {fix} in place, {part} can lose a machine without anyone noticing.",
    "Think of {part} as a promise: it must keep working when {part2} does not.",
    "Our rule of thumb is to keep {metric} well below the level where {problem} starts.",
    "The numbers are clear: after {fix}, {metric} dropped from {number} to {number2}.",
    "Why does {problem} matter? Because {part} has no spare capacity left.",
    "It's tempting to tune {part} by hand, but {fix} works better in the long run.",
]
_OPENERS = [
    "This post looks at {topic} from the point of view of the engineer on call.",
    "Every large system runs into {topic} sooner or later.",
    "Here is what we learned about {topic} while running a busy service.",
    "This is a short guide to {topic}, written for people who build services.",
    "Most problems with {topic} start small and grow quietly.",
]
_CLOSERS = [
    "In short, {fix} is worth the effort when {metric} matters.",
    "The lesson is simple: measure {metric}, then change {part}.",
    "Next time we will look at {problem} in more detail.",
    "None of this is new, but it is easy to forget under pressure.",
    "Start simple, measure everything, and add {fix} only when the numbers ask for it.",
]
_PERIODS = ["week", "month", "quarter", "year", "spring", "autumn"]
_SOURCES = ["blog.example.com", "news.example.org", "forum.example.net", "docs.example.io"]
_BOILERPLATE = [
    "Click here to subscribe to our newsletter!",
    "Share this article on social media.",
    "Copyright 2024 Example Media. All rights reserved.",
    "We use cookies to improve your experience. Accept all cookies.",
    "Advertisement",
    "Read more...",
    "Sign up for our newsletter today.",
    "Follow us on Twitter for more updates.",
]
_SHORT = [
    "Page not found.",
    "Loading...",
    "Thanks for reading!",
    "Error 404: the page you asked for does not exist.",
    "Comments are closed.",
    "Hello world",
    "",
    "Subscribe now and never miss a post.",
]
# Characters a crawl smuggles in: NUL, BEL, ESC, DEL (category Cc) and zero-width ones (Cf).
_CONTROL = ["\x00", "\x07", "\x1b", "\x7f", "\u200b", "\ufeff"]
_ACCENTED = ["naïve", "café", "rôle", "coöperate", "façade", "déjà vu"]


@dataclass(frozen=True)
class DemoCorpus:
    """The generated records and the truth about what was injected into them.

    ``kinds[i]`` is ``original``, ``exact_duplicate``, ``near_duplicate`` or ``short`` for
    ``docs[i]``; ``injected`` counts kinds and noise: ``html_docs``, ``boilerplate_lines``,
    ``control_chars`` (each injected character), ``decomposed_docs``, ``whitespace_docs``.
    """

    docs: list[dict]
    kinds: list[str]
    injected: dict[str, int] = field(default_factory=dict)


def _fill(rng: random.Random, template: str, t: dict[str, list[str]], topic: str) -> str:
    parts = rng.sample(t["parts"], 3)
    metrics = rng.sample(t["metrics"], 2)
    number = rng.choice([20, 40, 50, 80, 120, 200, 500, 1200, 5000, 20000])
    values = {
        "topic": topic,
        "part": parts[0],
        "part2": parts[1],
        "part3": parts[2],
        "metric": metrics[0],
        "metric2": metrics[1],
        "problem": rng.choice(t["problems"]),
        "fix": rng.choice(t["fixes"]),
        "number": number,
        "number2": number // rng.choice([2, 4, 10]),
        "period": rng.choice(_PERIODS),
        "pct": rng.choice([10, 15, 25, 30, 40, 60]),
    }
    values["Fix"] = values["fix"][0].upper() + values["fix"][1:]
    values["Problem"] = values["problem"][0].upper() + values["problem"][1:]
    return template.format(**values)


def _document(rng: random.Random) -> str:
    """One clean document: a title line, then 3 to 5 paragraphs of 4 to 6 sentences."""
    topic = rng.choice(list(TOPICS))
    t = TOPICS[topic]
    facts = rng.sample(t["facts"], len(t["facts"]))
    paragraphs = []
    for p in range(rng.randint(3, 5)):
        sentences = [_fill(rng, rng.choice(_OPENERS), t, topic)] if p == 0 else []
        while len(sentences) < rng.randint(4, 6):
            if facts and rng.random() < 0.35:
                sentences.append(facts.pop())
            else:
                sentences.append(_fill(rng, rng.choice(_TEMPLATES), t, topic))
        if rng.random() < 0.08:
            sentences.append(f"Nobody wants a {rng.choice(_ACCENTED)} design here.")
        paragraphs.append(" ".join(sentences))
    paragraphs.append(_fill(rng, rng.choice(_CLOSERS), t, topic))
    return rng.choice(t["title"]) + "\n\n" + "\n\n".join(paragraphs)


def _near_duplicate(rng: random.Random, text: str) -> str:
    """A copy with about one word in 80 replaced: the kind of edit a re-post or a template site makes."""
    lines = text.split("\n")
    words = [(i, j) for i, line in enumerate(lines) for j, _ in enumerate(line.split(" ")) if line]
    split = [line.split(" ") for line in lines]
    for i, j in rng.sample(words, max(1, len(words) // 80)):
        split[i][j] = rng.choice(["really", "often", "new", "large", "simple", "busy", "main"])
    return "\n".join(" ".join(ws) for ws in split)


def _add_noise(rng: random.Random, text: str, counts: dict[str, int]) -> str:
    """Dirty a clean document the way a crawl does; cleaning must give back exactly ``text``."""
    if not text.isascii() and rng.random() < 0.5:
        counts["decomposed_docs"] += 1
        text = unicodedata.normalize("NFD", text)
    if rng.random() < 0.2:
        n = rng.randint(1, 4)
        counts["control_chars"] += n
        chars = list(text)
        for _ in range(n):
            chars.insert(rng.randrange(len(chars) + 1), rng.choice(_CONTROL))
        text = "".join(chars)
    paragraphs = text.split("\n\n")
    if rng.random() < 0.25:
        counts["boilerplate_lines"] += (n := rng.randint(1, 3))
        for _ in range(n):
            paragraphs.insert(
                rng.choice([0, len(paragraphs), rng.randrange(len(paragraphs) + 1)]), rng.choice(_BOILERPLATE)
            )
    if rng.random() < 0.3:
        counts["html_docs"] += 1

        def tagged(p: str) -> str:
            p = p.replace("&", "&amp;").replace('"', "&quot;").replace("'", "&#39;")
            words = p.split(" ")
            k = rng.randrange(len(words))
            words[k] = f"<b>{words[k]}</b>" if rng.random() < 0.5 else f'<a href="/wiki/{k}">{words[k]}</a>'
            if len(words) > 3:
                k = rng.randrange(1, len(words))
                words[k - 1] += "&nbsp;" + words.pop(k)
            return "<p>" + " ".join(words) + "</p>"

        body = "\n".join(tagged(p) for p in paragraphs)
        text = f"<html><head><title>x</title><script>var n = 1;</script></head><body>\n{body}\n</body></html>"
    else:
        text = "\n\n".join(paragraphs)
    if rng.random() < 0.3:
        counts["whitespace_docs"] += 1
        text = text.replace(" ", rng.choice(["  ", " \t", "   "]), rng.randint(3, 20)).replace("\n\n", "\n \n\n\n", 2)
        text = "   " + text + "  \n\n"
    return text


def demo_corpus(n_docs: int = 600, *, seed: int = 0) -> DemoCorpus:
    """Generate ``n_docs`` raw records (about 10% exact and 10% near duplicates, 4% short pages)."""
    if n_docs < 1:
        raise ValueError(f"n_docs={n_docs}: need at least 1 document")
    rng = random.Random(seed)
    n_exact, n_near, n_short = n_docs // 10, n_docs // 10, n_docs // 25
    n_orig = n_docs - n_exact - n_near - n_short
    counts = {k: 0 for k in ("html_docs", "boilerplate_lines", "control_chars", "decomposed_docs", "whitespace_docs")}
    originals = [_document(rng) for _ in range(n_orig)]
    clean = [(text, "original") for text in originals]
    clean += [(text, "exact_duplicate") for text in rng.sample(originals, n_exact)]
    # Distinct sources: two edits of one document can be further apart than either is from it.
    clean += [(_near_duplicate(rng, text), "near_duplicate") for text in rng.sample(originals, n_near)]
    records = [(_add_noise(rng, text, counts), kind) for text, kind in clean]
    for _ in range(n_short):
        if rng.random() < 0.5:
            records.append((rng.choice(_SHORT), "short"))
        else:
            # A page that is all boilerplate: the lines go, then the page is too short to keep.
            lines = rng.sample(_BOILERPLATE, 2)
            counts["boilerplate_lines"] += 2
            records.append(("\n".join(lines), "short"))
    rng.shuffle(records)
    docs = [{"id": f"doc-{i:05d}", "source": rng.choice(_SOURCES), "text": text} for i, (text, _) in enumerate(records)]
    kinds = [kind for _, kind in records]
    injected = {
        "docs": len(docs),
        "originals": kinds.count("original"),
        "exact_duplicates": kinds.count("exact_duplicate"),
        "near_duplicates": kinds.count("near_duplicate"),
        "short": kinds.count("short"),
        **counts,
    }
    return DemoCorpus(docs=docs, kinds=kinds, injected=injected)


def demo_corpus_texts(n_docs: int = 600, *, seed: int = 0) -> list[str]:
    """Just the raw texts of ``demo_corpus(n_docs, seed=seed)``."""
    return [d["text"] for d in demo_corpus(n_docs, seed=seed).docs]


def write_demo_corpus(path: str | Path, *, n_docs: int = 600, seed: int = 0) -> Path:
    """Write the raw demo corpus as JSONL (``{"id", "source", "text"}`` per line) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for doc in demo_corpus(n_docs, seed=seed).docs:
            f.write(json.dumps(doc, ensure_ascii=False) + "\n")
    return path


def read_corpus(path: str | Path) -> list[dict]:
    """Records of a JSONL corpus; ValueError naming the file and line when one is not a document."""
    docs = []
    with Path(path).open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                doc = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{n}: not JSON ({exc.msg})") from None
            if not isinstance(doc, dict) or not isinstance(doc.get("text"), str):
                raise ValueError(f"{path}:{n}: a record needs a string field 'text'")
            docs.append(doc)
    return docs
