"""Adapters for frameworks: each imports its framework, the core never does."""
