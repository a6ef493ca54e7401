"""The training library behind tools/tessera-train and tools/bench-python (config, data,
models, checkpoints, the loop; text.py, gpt_task.py and profile.py: the gpt-char task)."""
