"""The user commands behind ``emogen`` (argparse sub-commands; emogen/cli.py assembles them)."""
