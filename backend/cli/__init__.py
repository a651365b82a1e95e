"""The `rejuve` command-line tool."""
