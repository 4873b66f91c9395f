import sys

from emogen.cli import main

sys.exit(main())
