"""Database access: role names, connection strings, migrations."""
