"""The data: images in memory, the built-in data sets, feature extractors and IS/FID.

`imagedata` (uint8 images in memory, sizes, cache paths), `datasets` (the built-in
loaders), `loading` (data set names and `load_dataset`), `extractors` (the classifier and
Inception feature extractors) `metrics` (the `Evaluator`: IS and FID per generator and
of their mixture) and `sharpness` (the Variance of Laplacian, the KD paper's third metric).

May import: `files`, `errors`, `registry`. Nothing from the method: a data set and a
metric know nothing of graphs or training.
"""
