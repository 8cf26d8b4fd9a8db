-- Per-key rate limit: rate_limit tokens (parts or requests) per second and
-- a bucket of rate_burst tokens; 0 means the service's default. A single
-- statement (see 0004).
ALTER TABLE apikeys ADD COLUMN rate_limit Float64, ADD COLUMN rate_burst Float64;
