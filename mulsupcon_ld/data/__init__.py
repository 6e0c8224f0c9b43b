"""Datasets: readers for the raw formats, the prepared format, and synthetic stand-ins.

Most callers need only :func:`load_prepared` / :func:`ensure_prepared`; readers are exported
for tests and for the image loaders.
"""

from .arff import read_arff_header, read_mulan, read_mulan_xml
from .hdf5 import read_mulsupcon_hdf5
from .prepare import (PreparedContent, prepare_dataset, prepare_synthetic, register_preparer,
                      seeded_split)
from .prepared import (PreparedDataset, ensure_prepared, is_prepared, load_prepared,
                       prepared_dir, staging_dir)

__all__ = [
    "PreparedContent", "PreparedDataset", "ensure_prepared", "is_prepared", "load_prepared",
    "prepare_dataset", "prepare_synthetic", "prepared_dir", "read_arff_header", "read_mulan",
    "read_mulan_xml", "read_mulsupcon_hdf5", "register_preparer", "seeded_split", "staging_dir",
]
