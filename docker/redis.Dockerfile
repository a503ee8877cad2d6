# A Redis image built with no registry: the host's Debian 12 redis-server and
# redis-cli (7.0) with the shared libraries they load, in an empty image.
# docker/images.sh prepares the context (rootfs/); build it through
# `make images`, not by hand.
#
# Used by compose.yaml when REDIS_IMAGE=redis-proxy/redis:7.0-local (make sets
# it); otherwise compose uses the official image. Both take the same command
# line: `redis-server --protected-mode no ...`.
FROM scratch
COPY rootfs/ /
ENV PATH=/usr/local/bin
WORKDIR /data
EXPOSE 6379/tcp
HEALTHCHECK --interval=5s --timeout=3s --start-period=5s --retries=3 \
	CMD ["/usr/local/bin/redis-cli", "ping"]
CMD ["redis-server", "--protected-mode", "no"]
