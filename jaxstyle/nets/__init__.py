"""Networks and their weights: the VGG module and presets (``vgg``), the model pytree and feature extraction
(``model``), numeric precision (``precision``), and the weight files: the converted format (``weights``), the
readers of every source format (``convert``) and downloads (``download``)."""
