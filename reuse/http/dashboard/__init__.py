"""The read-only web dashboard (pages.py: routes and rendering; views.py: what each page reads; layout.py:
the lineage graph's geometry)."""
