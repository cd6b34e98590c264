"""The ML core: images in, guarded predictions and explanations out.

Nothing here imports Flask or the web layer (``app.web``); training, evaluation,
benchmarks and the web app all build on it.
"""

import os

# Quiet TensorFlow's C++ start-up messages in every process that uses the core.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
