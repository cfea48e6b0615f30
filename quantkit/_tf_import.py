"""Import TensorFlow (and load LiteRT models) without the native start-up banners.

TF 2.21 prints a few lines from C++ while it loads (oneDNN custom operations, CPU features),
whatever ``TF_CPP_MIN_LOG_LEVEL`` says, and LiteRT announces its XNNPACK delegate; they would
precede every message of the ``quantkit`` command. ``native_banners_filtered()`` drops exactly
those lines and passes on anything else written to stderr meanwhile.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
from typing import Iterator

_BANNER = re.compile(r"WARNING: All log messages before absl::InitializeLog|"
                     r"^[IW]\d{4} [\d:.]+\s+\d+ (port|cpu_feature_guard)\.cc:|"
                     r"^To enable the following instructions:|"
                     r"^INFO: Created TensorFlow Lite XNNPACK delegate for CPU\.$")


@contextlib.contextmanager
def native_banners_filtered() -> Iterator[None]:
    """Redirect file descriptor 2 meanwhile; then print what it got, banners left out."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no usable stderr: nothing to filter
        yield
        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            with contextlib.suppress(OSError, ValueError, AttributeError):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode(errors="replace")
            kept = [line for line in text.splitlines()
                    if line.strip() and not _BANNER.search(line)]
            if kept:
                print("\n".join(kept), file=sys.stderr)


def import_tensorflow() -> None:
    """Import ``tensorflow`` (a no-op when it is loaded), without its native banner."""
    if "tensorflow" in sys.modules:
        return
    with native_banners_filtered():
        import tensorflow  # noqa: F401


def start_tensorflow_for_cli() -> None:
    """Import TF for the ``quantkit`` command, which is an application, not a library import:
    TF's C++ INFO and WARNING lines off unless the user set ``TF_CPP_MIN_LOG_LEVEL`` (set
    in this process only, before TF reads it), its native banner filtered, TF's and absl's
    Python loggers at ERROR (tfds warns about its folders through absl)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import_tensorflow()
    import tensorflow as tf  # deferred: TF starts only when used (`quantkit --help` stays TF-free)

    tf.get_logger().setLevel(logging.ERROR)
    logging.getLogger("absl").setLevel(logging.ERROR)
