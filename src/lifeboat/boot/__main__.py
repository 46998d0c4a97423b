"""`python3 -m lifeboat.boot bootfix DISK ...`: the bootfix command without the rest of the CLI."""

from lifeboat.boot.command import main

raise SystemExit(main())
