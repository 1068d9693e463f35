"""The ``semaug demo`` pipeline (see :mod:`torch_semaug.commands.demo`)."""
