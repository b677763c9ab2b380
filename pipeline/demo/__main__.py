"""``python -m pipeline.demo``: the demo's command line (``scoring-demo``)."""

from pipeline.demo.cli import main

raise SystemExit(main())
