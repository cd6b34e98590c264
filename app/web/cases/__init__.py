"""Cases: many photographs of one smear analysed into one verdict, their pages, review,
cell gallery, report and search.

``presenter`` words a case for people and API clients, ``uploads`` analyses a case's
photographs in batches, ``reviews`` records a review, ``cell_gallery`` a cell model's
leukocytes and their reclassification, ``pdf`` the report.
"""
