"""Clinical data: the templates as a declarative schema, reading, validation and intake."""
