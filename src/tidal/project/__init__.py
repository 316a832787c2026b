"""Label your own data: a project (pool, classes, rounds) that `tidal query/label/status/report` work on."""
