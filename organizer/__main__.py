"""`python -m organizer` is the `organizer` command."""
from organizer.cli import main

main()
