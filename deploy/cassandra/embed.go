// Package cassandradeploy holds the Cassandra deployment files: the
// versioned trace-store schema (schema/vNNN.cql, embedded for
// `meshlens cassandra migrate`) and a compose file that starts a Cassandra
// for the conformance tests.
package cassandradeploy

import "embed"

// Schema holds schema/vNNN.cql, applied in version order.
//
//go:embed schema/*.cql
var Schema embed.FS
