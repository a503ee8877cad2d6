// Package resp is the proxy's one implementation of the Redis protocol:
// the request parser that both data paths (the event loop and the
// goroutine per client) read clients with, the reply scanner both use to
// find where a server's replies end, and the few encoders the proxy needs
// for replies of its own.
//
// The request parser follows Redis's own reading (networking.c:
// processMultibulkBuffer, processInlineBuffer and sdssplitargs) and
// checks the limits in the same pass that finds a command's end, so an
// oversized bulk, too many arguments or an endless inline line is refused
// from its header, before its bytes are buffered:
//
//	p := resp.Parser{MaxBulk: 512 << 20}
//	for {
//		cmd, n, err := p.Next(buf)
//		if err != nil { /* reply -err.Error(), close */ }
//		if n == 0 { /* read more, call again with the same start */ }
//		if len(cmd.Args) > 0 { /* run cmd */ }
//		buf = buf[n:]
//	}
//
// Where Redis accepts bytes that are not the protocol (a body not ended
// by CRLF, a header ended by CR and any byte, more than DefaultMaxArgs
// arguments), the parser refuses them with the error Redis gives for that
// header: the proxy forwards what it parsed, and must never frame a stream
// differently from the server. Where Redis refuses, the parser refuses
// with Redis's words, as soon as no later byte can change the answer
// (Redis says it once the line's CR has come). An inline line holding a
// NUL, whose end Redis's strchr never finds, is refused with the reply
// Redis ends with, ErrInlineTooBig. The differential tests hold the
// parser and a real redis-server side by side.
//
// Nothing here does I/O except AppendValue, which reads one reply from a
// bufio.Reader; nothing is safe for concurrent use unless it says so.
package resp
