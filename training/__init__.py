"""Regenerates every model the app serves: data, split, training, evaluation, reports.

Builds on the ML core (``app.core``) and never imports the web layer.
"""

import os

# Quiet TensorFlow's C++ start-up messages (set before any module here imports it).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
