"""`python -m runtime [HANDLER]`: run as the function's Lambda runtime (see runtime.loop)."""

import sys

from runtime.loop import main

sys.exit(main(sys.argv))
