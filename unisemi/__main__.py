from unisemi.cli import main

raise SystemExit(main())
