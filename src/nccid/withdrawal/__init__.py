"""Withdrawing a patient from the database: everything of theirs removed, and kept out."""
