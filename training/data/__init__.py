"""Synthetic training data: clean skin sources, a blemish synthesiser and datasets.

``sources`` (portraits, skin masks, procedural textures), ``blemishes`` (the defect painter),
``dataset`` (training batches and the fixed evaluation set), ``preview`` (contact sheets).
Needs the ``train`` extra (scikit-image, matplotlib; scipy comes with scikit-image).
"""
