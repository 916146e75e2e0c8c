"""One storage contract, run against every UnitOfWork adapter."""
