"""Case records: cases, their fields and reviews in a SQL database, and the image store.

SQLAlchemy 2 models (``schema``), Alembic migrations run at start (``database``),
a content-addressed folder for the original photographs (``image_store``) and the
operations on cases (``cases``). Nothing here imports Flask or TensorFlow.
"""
