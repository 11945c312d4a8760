"""`python -m remediate`."""
import sys

from .cli import main

sys.exit(main())
