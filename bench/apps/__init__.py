"""Plain servers the Bento is compared with: what a team would write without a model server."""
