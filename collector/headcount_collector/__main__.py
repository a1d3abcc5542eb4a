import sys

from headcount_collector.cli import main

sys.exit(main())
