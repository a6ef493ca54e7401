"""The training library behind tools/tessera-train and tools/bench-python (config, data,
models, checkpoints, the loop)."""
