"""HTTP service for hosts, reviewers and the reviewer inbox page; see ``create_app``."""
