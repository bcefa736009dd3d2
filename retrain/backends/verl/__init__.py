"""The verl backend, in progress.

Done: `translate` (retrain config -> verl's composed and validated Hydra config) and `data` (prompt
rows -> verl's parquet). Not done: the reward bridge, the launch on verl's v1 trainer (with the CPU
plugin described in docs/dev/verl-cpu-research.md) and the metrics mapping. Until they are, the
name `verl` is not registered and a config that asks for it is rejected at validation.
"""
