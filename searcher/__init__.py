"""Query side of walvus: search, query and filter evaluation over segments."""
