// Package itest runs the appliance's failure scenarios against the real
// images (redis-proxy/proxy:dev and redis-proxy/redis:7.0-local, built by
// `make images`) with testcontainers-go: two Redis servers and the proxy pair
// holding a VIP on a private bridge network with a fixed subnet, a client on
// the host writing and reading unique keys through the VIP for the whole
// scenario, and a crash, stop, partition or maintenance step in the middle.
//
// Each scenario builds its own network and containers and removes them when
// it ends, failed or not; it logs its unavailability window, the client's
// errors and the acknowledged writes that were lost, and a SUMMARY line.
//
// The scenarios run only when REDIS_PROXY_ITEST=1 (scripts/test.sh sets it
// for the appliance layer: `make test-appliance`); otherwise they skip, so
// `go test ./...` stays fast. They never pull an image: a missing image fails
// the run with a pointer to `make images`. They need root on the Docker host
// for the heartbeat partition (nsenter into the proxies' network namespaces).
package itest
