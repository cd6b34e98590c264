"""The quick check: one photograph uploaded and analysed, its result page, the models page.

``routes`` is the ``analysis`` blueprint; ``presenter`` words a prediction and a model card
for people and as JSON (the API and the case pages use it too).
"""
