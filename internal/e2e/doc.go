// Package e2e holds Takt's end-to-end tests: the ingestor, processor and
// query API run in-process against the real ClickHouse, Redis and broker of
// the local stack, and tests follow parts from an HTTP request to a record
// of the parts area. It has no non-test code.
package e2e
