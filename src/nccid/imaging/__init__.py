"""Imaging: DICOM de-identification, the DICOM node, folder import and linking."""
