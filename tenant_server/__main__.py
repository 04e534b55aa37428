import sys

from tenant_server.cli import main

sys.exit(main())
