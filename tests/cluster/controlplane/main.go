// Command controlplane is a multi-call binary that runs a real Kubernetes control plane for the
// ltr-serving test tier: etcd (embedded server), kube-apiserver, kube-controller-manager and
// kube-scheduler, all built from the pinned upstream Go modules, plus a small PKI generator.
//
//	controlplane etcd --data-dir DIR --client-url http://127.0.0.1:PORT --peer-url http://127.0.0.1:PORT
//	controlplane kube-apiserver ARGS...          (upstream flags, unchanged)
//	controlplane kube-controller-manager ARGS...
//	controlplane kube-scheduler ARGS...
//	controlplane pki --dir DIR --node NAME       (CA, serving, client and service-account keys)
//	controlplane version
//
// The process is test infrastructure: it runs nothing a real cluster would not run.
package main

import (
	"fmt"
	"os"
	_ "time/tzdata" // CronJob time-zone support, as upstream's main packages do

	"github.com/spf13/cobra"
	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
)

func usage() {
	fmt.Fprintln(os.Stderr, "usage: controlplane etcd|kube-apiserver|kube-controller-manager|kube-scheduler|pki|version [ARGS...]")
	os.Exit(2)
}

func runCobra(cmd *cobra.Command, args []string) {
	cmd.SetArgs(args)
	os.Exit(cli.Run(cmd))
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	sub, args := os.Args[1], os.Args[2:]
	switch sub {
	case "etcd":
		os.Exit(runEtcd(args))
	case "kube-apiserver":
		runCobra(apiserver.NewAPIServerCommand(), args)
	case "kube-controller-manager":
		runCobra(controllermanager.NewControllerManagerCommand(), args)
	case "kube-scheduler":
		runCobra(scheduler.NewSchedulerCommand(), args)
	case "pki":
		os.Exit(runPKI(args))
	case "version":
		fmt.Println(versionString())
	default:
		usage()
	}
}
