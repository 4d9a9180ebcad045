// The pause process of the local node's pod sandboxes (local-cluster/node.ts): it holds the pod's
// namespaces and exits on SIGTERM or SIGINT, as registry.k8s.io/pause does, so that the node needs
// no registry.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	// As PID 1 of the sandbox it adopts orphans: reap them.
	signal.Ignore(syscall.SIGCHLD)
	<-signals
}
