"""Subcommands of the ``resnet-core`` command line, one module each."""
