"""Data: sources (embedded, npz, tfds), per-host batches, augmentations."""
