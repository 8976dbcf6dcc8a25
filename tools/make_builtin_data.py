"""Build src/robustlens/resources/data/*.npz from the full Fashion-MNIST idx files (Debian's dataset-fashion-mnist).

The built-in test set is the full 10,000 images; the built-in training set is a stratified subset of
1,200 images per class, chosen with a fixed seed.
"""

from pathlib import Path

import numpy as np

from robustlens.engine.data import DEBIAN_FASHION_MNIST, IDX_FILES, read_idx  

out = Path(__file__).resolve().parents[1] / "src" / "robustlens" / "resources" / "data"
rng = np.random.default_rng(0)
for split in ("train", "test"):
    images = read_idx(DEBIAN_FASHION_MNIST / IDX_FILES[split][0])
    labels = read_idx(DEBIAN_FASHION_MNIST / IDX_FILES[split][1])
    indices = np.arange(len(labels))
    if split == "train":
        indices = np.sort(np.concatenate([rng.choice(np.flatnonzero(labels == c), 1200, replace=False)
                                          for c in range(10)]))
    np.savez_compressed(out / f"fashion-mnist-{split}.npz", images=images[indices],
                        labels=labels[indices], indices=indices.astype(np.int32))
    print(split, len(indices))
