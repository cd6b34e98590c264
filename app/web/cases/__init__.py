"""Cases: many photographs of one smear analysed into one verdict, their pages, review,
cell gallery, report and search.

``routes`` is the ``cases`` blueprint (the pages; the JSON API is ``app.web.api.cases``);
``presenter`` words a case for people and API clients; ``uploads`` analyses a case's
photographs in batches and reads the case search's query; ``reviews`` records a review;
``cell_gallery`` shows a cell model's leukocytes and records their reclassification;
``pdf`` is the report.
"""
