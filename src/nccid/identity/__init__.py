"""Identity: NHS/CHI validation, keyed pseudonyms and the key vault.

Public surface:
- ``numbers``: ``validate_patient_number``, ``InvalidPatientNumber`` (pure)
- ``keys``: ``Keyring``, ``create_key_file``, ``load_keyring``, ``KeyFileError`` (pure)
- ``service`` (Django): ``get_keyring``, ``pseudonymise``, ``store_in_vault``, ``reveal``,
  ``check_installation_key``
"""
