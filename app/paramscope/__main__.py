from paramscope.cli import main

raise SystemExit(main())
