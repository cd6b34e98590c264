"""The API's documentation: the OpenAPI document (``openapi``) and the pages that show it
(``routes``, the ``docs`` blueprint)."""
