"""Stages 4-5: construct the module tree, materialise it, tie, initialise; the composite runtime; RNG streams."""
