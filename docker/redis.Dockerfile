# A Redis image built with no registry: the host's Debian 12 redis-server and
# redis-cli (7.0) with the shared libraries they load, in an empty image.
# docker/images.sh prepares the context (rootfs/); build it through
# `make images`, not by hand.
#
# Used by compose.yaml when REDIS_IMAGE=redis-proxy/redis:7.0-local (make sets
# it); otherwise compose uses the official image. Both take the same command
# line: `redis-server --requirepass ... --masterauth ...`. Run bare, it is
# Redis's own default: protected mode on, so with no password it answers
# loopback only.
FROM scratch
COPY rootfs/ /
ENV PATH=/usr/local/bin
WORKDIR /data
EXPOSE 6379/tcp
# -e: fail on an error reply (NOAUTH), not only on no answer; with a
# password, set REDISCLI_AUTH in the container's environment.
HEALTHCHECK --interval=5s --timeout=3s --start-period=5s --retries=3 \
	CMD ["/usr/local/bin/redis-cli", "-e", "ping"]
CMD ["redis-server"]
