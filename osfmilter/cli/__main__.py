import sys

from osfmilter.cli import main

sys.exit(main())
