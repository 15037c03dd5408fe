"""The file pipeline."""
