"""pydantic models at tracetune's boundaries: the canonical Trace and the configuration."""
