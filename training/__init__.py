"""Regenerates every model the app serves: data, split, training, evaluation, reports.

Builds on the ML core (``app.core``) and never imports the web layer.
"""

# The core's TensorFlow settings, before any module here imports TensorFlow.
import app.core  # noqa: F401
