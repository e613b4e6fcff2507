"""Identity: NHS/CHI validation, keyed pseudonyms and the key vault.

Public surface:
- ``numbers``: ``validate_patient_number``, ``InvalidPatientNumber``, ``chi_sex`` (pure)
- ``keys``: ``Keyring``, ``create_key_file``, ``load_keyring``, ``KeyFileError`` (pure)
- ``linkfile``: ``link_csv`` (pure; behind ``nccid link``)
- ``service`` (Django): ``get_keyring``, ``pseudonymise``, ``encrypt_for_vault``,
  ``store_in_vault``, ``reveal``, ``rekey_vault``, ``check_installation_key``
- commands: ``nccid link``, ``nccid vault reveal|audit|rekey``, ``nccid key fingerprint|check``

See docs/keys.md for what the key protects, backup and rotation.
"""
