//go:build race

package proxy

// raceDetector: the tests run with -race, which slows the proxy's own code
// (parsing above all) several times and Redis not at all; timing bounds
// that compare the two allow for it.
const raceDetector = true
