"""The cell path: find each leukocyte, cut it out at one physical scale, classify it.

``detect`` finds the cells and says which are excluded and why; ``stain`` normalises
a field's stain; ``crops`` cuts the cells out; ``model`` runs a cell classifier and
pools its cells into the field's answer.
"""
