from mistral_gateway.cli import main

raise SystemExit(main())
