"""The calibration engine (runs a representative dataset, collects activation ranges).

Its own top-level package: it never imports quantkit. The engine itself lands with the
int8 quantizer; until then quantkit rejects ``representative_dataset`` with a clear error.
"""
