"""Trainers: SFT warm start, GRPO and SPIRAL side by side (`spiral_bench.trainers`)."""
