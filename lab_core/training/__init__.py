"""Lab 08: distributed training. Data pipeline and BPE tokenizer, sharded dataset in an object store, a
trainer launched with torchrun (DDP, FSDP2, tensor and pipeline parallel, BF16, gradient accumulation),
distributed checkpoints, an experiment tracker, a model registry and an evaluation suite."""
