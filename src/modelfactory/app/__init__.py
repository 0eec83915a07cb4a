"""The Hydra front end: the run job, per-job failure isolation and resume, sweep summaries and plots.

The only package that imports Hydra. Importing it does not: each module does.
"""
