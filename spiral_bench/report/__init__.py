"""Reproducibility reports from saved run folders (figures, HTML, Markdown, manifest)."""
