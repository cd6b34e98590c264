"""Regenerates every model the app serves: data, split, training, evaluation, reports."""
