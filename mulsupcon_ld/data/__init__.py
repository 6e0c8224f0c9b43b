"""Datasets, in layers (each module imports only the ones listed before it):

* format: :mod:`.prepared` — the prepared format (``PreparedDataset``, ``FORMAT_VERSION``, the one
  :func:`~.prepared.seeded_split`, ``PreparedContent``);
* readers: :mod:`.arff`, :mod:`.hdf5`, :mod:`.image_store`, :mod:`.reader_types`, :mod:`.voc`,
  :mod:`.coco`, :mod:`.mirflickr`, :mod:`.nuswide`, :mod:`.readers` (format dispatch and layout
  checks, no torch), :mod:`.synthetic`;
* (``mulsupcon_ld.download`` sits here, between readers and preparers)
* preparers: :mod:`.image_prepare`, :mod:`.preparers` (the raw format → preparer table);
* prepare: :mod:`.prepare` (``prepare_dataset``, ``prepare_synthetic``, ``ensure_prepared``);
* batches: :mod:`.images` (the image DataLoader; ``mulsupcon_ld.batches`` on top);
* commands: :mod:`.commands` (``datasets``, ``download``, ``prepare``, ``info``).

This package imports nothing itself, so importing one reader never pulls in the layers above.
"""
