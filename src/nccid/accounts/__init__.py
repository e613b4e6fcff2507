"""Sites, user accounts with roles, API tokens and the audit log (Django app)."""
