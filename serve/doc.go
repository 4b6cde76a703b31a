// Package serve holds the wire-protocol front ends (serve/pgwire,
// serve/mysqlwire): sessions, authentication, TLS, routing between the
// materializer's cache and the origin tunnel.
package serve
