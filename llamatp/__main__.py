"""`python -m llamatp`: the same as the `llamatp` command."""

from llamatp.cli import main

if __name__ == "__main__":  # not when a spawned worker imports this module
    main()
