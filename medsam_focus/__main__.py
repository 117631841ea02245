import sys

from medsam_focus.cli import main

sys.exit(main())
