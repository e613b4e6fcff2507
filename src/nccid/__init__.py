"""nccid: the National COVID-19 Chest Imaging Database.

Parts of the system, one package each:

- ``nccid.identity``  NHS/CHI validation, keyed pseudonyms, the key file and the key vault
- ``nccid.clinical``  clinical templates (schema as data), reading, validation, intake
- ``nccid.imaging``   DICOM de-identification, the DICOM node, folder import, linking
- ``nccid.warehouse`` object storage layout, training/validation split, the Parquet catalogue
- ``nccid.portal``    the site portal, summary, dashboard and JSON API (Django)
- ``nccid.research``  cohorts, exports, datasets, AI validation, modelling and teaching
- ``nccid.accounts``  sites, users, roles and the audit log (Django)
"""

__version__ = "0.1.0"
