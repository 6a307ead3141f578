import sys

from d4c.cli import main

sys.exit(main())
