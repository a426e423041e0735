import sys

from fedsimenv.cli import main

sys.exit(main())
