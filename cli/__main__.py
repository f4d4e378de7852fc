"""`python -m cli ...` runs the same entry point as the `metaparse` console script."""
from cli.main import main

raise SystemExit(main())
