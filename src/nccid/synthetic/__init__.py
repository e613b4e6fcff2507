"""Synthetic people, clinical sheets and DICOM files for tests, demos and benchmarks.

Every NHS number here is from the 999 test range; every name and date is invented.
"""
