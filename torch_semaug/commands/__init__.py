"""Subcommands of the ``semaug`` command line (see torch_semaug.cli)."""
