package itest

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/testcontainers/testcontainers-go"
	tclog "github.com/testcontainers/testcontainers-go/log"
)

// Fixed local tags built by `make images` (docker/images.sh); never pulled.
const (
	proxyImage = "redis-proxy/proxy:dev"
	redisImage = "redis-proxy/redis:7.0-local"
	// labelKey marks every container and network a scenario creates, so a
	// run can remove what an interrupted earlier run left behind.
	labelKey = "org.redis-proxy.itest"
)

var (
	// skipReason, when set, makes every scenario skip; failReason makes
	// every scenario fail (the run was asked for but cannot work).
	skipReason, failReason string
	docker                 *testcontainers.DockerClient

	summaryMu sync.Mutex
	summaries []string
)

type quietLogger struct{}

func (quietLogger) Printf(string, ...any) {}

func TestMain(m *testing.M) {
	// No Ryuk reaper (it is an image we cannot pull): every scenario removes
	// its own containers and network in t.Cleanup.
	os.Setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
	flag.Parse()
	tclog.SetDefault(quietLogger{})
	code := func() int {
		setup()
		if docker != nil {
			defer docker.Close()
		}
		return m.Run()
	}()
	summaryMu.Lock()
	if len(summaries) > 0 {
		fmt.Println("=== appliance scenarios (window: longest time without an acknowledged write; lost: acknowledged writes missing at the end)")
		for _, s := range summaries {
			fmt.Println(s)
		}
	}
	summaryMu.Unlock()
	os.Exit(code)
}

func setup() {
	if os.Getenv("REDIS_PROXY_ITEST") == "" {
		skipReason = "appliance scenarios run with REDIS_PROXY_ITEST=1 (make test-appliance)"
		return
	}
	if testing.Short() {
		skipReason = "appliance scenarios do not run with -short"
		return
	}
	if os.Geteuid() != 0 {
		failReason = "the appliance scenarios need root: they nsenter the containers' network namespaces to see which proxy holds the VIP and to cut the heartbeat"
		return
	}
	if _, err := exec.LookPath("nsenter"); err != nil {
		failReason = "nsenter (util-linux) is needed to look into the containers' network namespaces"
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var err error
	docker, err = testcontainers.NewDockerClientWithOpts(ctx)
	if err == nil {
		_, err = docker.Ping(ctx)
	}
	if err != nil {
		failReason = fmt.Sprintf("no Docker engine reachable: %v", err)
		return
	}
	for _, img := range []string{proxyImage, redisImage} {
		if _, err := docker.ImageInspect(ctx, img); err != nil {
			failReason = fmt.Sprintf("image %s: %v (build it with `make images`; the scenarios never pull)", img, err)
			return
		}
	}
	if err := removeLeftovers(ctx); err != nil {
		failReason = fmt.Sprintf("removing containers and networks left by an earlier run: %v", err)
	}
}

// removeLeftovers deletes containers and networks labelled by an earlier,
// interrupted run (a killed go test runs no cleanups).
func removeLeftovers(ctx context.Context) error {
	f := filters.NewArgs(filters.Arg("label", labelKey))
	ctrs, err := docker.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		return err
	}
	for _, c := range ctrs {
		if err := docker.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true, RemoveVolumes: true}); err != nil {
			return err
		}
	}
	nets, err := docker.NetworkList(ctx, networkListOptions(f))
	if err != nil {
		return err
	}
	for _, n := range nets {
		if err := docker.NetworkRemove(ctx, n.ID); err != nil {
			return err
		}
	}
	if len(ctrs)+len(nets) > 0 {
		fmt.Printf("itest: removed %d containers and %d networks left by an earlier run\n", len(ctrs), len(nets))
	}
	return nil
}

// needAppliance skips or fails t when the scenarios cannot run here.
func needAppliance(t *testing.T) {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
	if failReason != "" {
		t.Fatal(failReason)
	}
}

func addSummary(line string) {
	summaryMu.Lock()
	defer summaryMu.Unlock()
	summaries = append(summaries, strings.TrimSpace(line))
}
