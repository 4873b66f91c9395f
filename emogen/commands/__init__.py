"""The ``emogen`` subcommands beyond ``stage`` and ``params`` (registered in emogen/cli.py COMMANDS)."""
