import sys

from offline_fix.cli import main

sys.exit(main())
