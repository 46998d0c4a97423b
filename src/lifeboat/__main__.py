from lifeboat.cli import main

raise SystemExit(main())
