"""Governed queries: the SQL the backend runs for people, with every rule inside it."""
