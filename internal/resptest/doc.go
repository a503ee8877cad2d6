// Package resptest is a raw RESP client for tests: it writes the exact bytes
// a test gives it and reads replies as the server sent them, so a test can
// assert the bytes on the wire (RESP2 and RESP3 alike) where a client
// library would convert, merge or hide them.
//
// It is deliberately a second, simple implementation of the protocol,
// independent of the proxy's own parser, which is what the tests check.
//
// A Value is one reply: its type byte, its parsed contents and its raw
// bytes. ReadValue reads one from a bufio.Reader; ReadRaw returns only its
// bytes (for comparing two servers' replies byte for byte); Parse reads one
// from a byte slice. Every RESP3 type is understood, attributes included
// (they are attached to the value they describe).
//
// A Conn is one TCP connection owned by a test: Dial opens it and closes it
// when the test ends. Its methods that fail the test (Write, Send, Read,
// Do, Exchange, ExpectClosed) must run on the test's goroutine; the Try
// variants and Pipeline return errors instead, for use elsewhere. Quote
// renders raw bytes for a failure message. Typical use:
//
//	c := resptest.Dial(t, addr)
//	resptest.Expect(t, c.Do("SET", "k", "v"), "OK")
//	resptest.Expect(t, c.Do("GET", "k"), `"v"`)
//	c.Write([]byte("QUIT\r\n"))
//	c.ExpectClosed(time.Second)
package resptest
