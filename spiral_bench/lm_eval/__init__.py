"""lm-evaluation-harness integration: task YAMLs, hooks, and the `spiral` model type."""
