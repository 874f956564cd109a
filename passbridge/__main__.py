import sys

from passbridge.cli import main

sys.exit(main())
