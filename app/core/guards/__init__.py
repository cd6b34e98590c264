"""Checks that decide whether a prediction may be shown as a verdict at all.

A new guard is a module here, called from ``InferenceService.classify``; its
result becomes a field of ``Prediction`` and what it fits from data goes into
the model card.
"""
