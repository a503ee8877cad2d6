//go:build !linux

package proxy

import (
	"errors"
	"net"

	"github.com/redis-proxy/redis-proxy/proxy/internal/resp"
)

// Event loops exist on Linux only; elsewhere every client has a goroutine.
const loopsSupported = false

type evloop struct{}

func newEvloop(*Proxy) (*evloop, error) { return nil, errors.New("event loops need Linux") }
func (l *evloop) run()                  {}
func (l *evloop) stop()                 {}
func (l *evloop) post(func())           {}
func (l *evloop) adopt(net.Conn, *session, []byte, resp.Parser) error {
	return errors.New("event loops need Linux")
}
func (l *evloop) retire(*pool)          {}
func (l *evloop) failPool(*pool, error) {}
func (l *evloop) conn(*pool)            {}
