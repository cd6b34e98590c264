"""The ML core: images in, guarded predictions and explanations out.

Nothing here imports Flask or the web layer (``app.web``); training, evaluation,
benchmarks and the web app all build on it. Importing it sets TensorFlow's defaults for
the process (an operator's own setting wins), so it comes before any TensorFlow import.
"""

import os

# Quiet TensorFlow's C++ start-up messages in every process that uses the core.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# TensorFlow takes oneDNN's kernels only on CPUs with AVX-512 unless told; on AVX2 ones they
# run the cell networks 2-5 times faster, within 1e-6 (docs/decisions.md, "oneDNN").
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
