"""The JSON API under /api/v1: predictions and models (``routes``, the ``api`` blueprint)
and cases (``cases``, the ``case_api`` blueprint); bearer tokens only."""
