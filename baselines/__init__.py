"""Test-time baselines and the published claims (`published.yaml`) (`spiral_bench.baselines`)."""
