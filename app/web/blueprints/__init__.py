"""One blueprint per feature; ``app.create_app`` registers each of them."""
