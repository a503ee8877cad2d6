package proxy

// A client's window: how many of its requests may be in flight at once,
// on either path. As many as windowBytes of replies at the client's
// average reply size, from 1 to a path's most. The average starts at
// initialReplySize, so a new client's first pipeline goes 4 requests at a
// time (a slow start) until its replies show how large they are: 32
// pipelined MGETs of 10 MB each, sent at once, cost Redis a second of
// copying with every other client waiting (and 200 of them, 2 GB of its
// memory); a client that does not read its replies then has few in
// flight when it is stopped.
const (
	windowBytes      = 1 << 20
	initialReplySize = windowBytes / 4
	gMaxBatch        = 4096 // the goroutine path's most: commands in one batch
)

func window(avgReply, most int) int {
	return min(max(windowBytes/max(avgReply, 1), 1), most)
}

// replySizes moves an average reply size toward per, the average of n
// replies just seen: by an eighth per reply, up to the whole way.
func replySizes(avg, per, n int) int {
	return avg + (per-avg)*min(n, 8)/8
}
