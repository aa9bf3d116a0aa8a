// bench_go: the Go side of greenrt's benchmark comparison (bench/README.md).
//
// Stdlib only; built offline by //bench:compare with GO111MODULE=off.
//
//	bench_go <workload> [-flag value ...]
//
// Every workload prints one line "RESULT key=value ..." on stdout: `value`
// is the measured metric, `check` a number the driver compares with the
// expected result (a wrong result fails the run), the rest are extras.
// The algorithms match bench/greenrt/*.cc and bench/fiber/*.cc one for one.
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"
)

type workload func(args []string) (map[string]float64, error)

var workloads = map[string]workload{
	"yield":       yieldBench,
	"spawn-join":  spawnJoinBench,
	"skynet":      skynetBench,
	"ping-pong":   pingPongBench,
	"fan-in":      fanInBench,
	"timers":      timersBench,
	"idle-memory": idleMemoryBench,
	"timeout":     timeoutBench,
	"echo-server": echoServer,
}

func main() {
	if len(os.Args) < 2 || workloads[os.Args[1]] == nil {
		names := make([]string, 0, len(workloads))
		for name := range workloads {
			names = append(names, name)
		}
		sort.Strings(names)
		fmt.Fprintf(os.Stderr, "usage: bench_go <%s> [flags]\n",
			strings.Join(names, "|"))
		os.Exit(2)
	}
	result, err := workloads[os.Args[1]](os.Args[2:])
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench_go %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
	printResult(result)
}

// newFlags returns a flag set with -workers, which every workload takes;
// it sets GOMAXPROCS, the Go counterpart of greenrt's worker count.
func newFlags(name string) (*flag.FlagSet, *int) {
	fs := flag.NewFlagSet(name, flag.ExitOnError)
	workers := fs.Int("workers", runtime.NumCPU(), "GOMAXPROCS")
	return fs, workers
}

func parse(fs *flag.FlagSet, workers *int, args []string) {
	fs.Parse(args)
	runtime.GOMAXPROCS(*workers)
}

func printResult(result map[string]float64) {
	keys := make([]string, 0, len(result))
	for key := range result {
		keys = append(keys, key)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString("RESULT")
	for _, key := range keys {
		fmt.Fprintf(&b, " %s=%s", key,
			strconv.FormatFloat(result[key], 'g', -1, 64))
	}
	fmt.Println(b.String())
}

func nsPer(elapsed time.Duration, n int64) float64 {
	return float64(elapsed.Nanoseconds()) / float64(n)
}

// splitmix64: the same pseudo-random sequence in every language, so the
// timers workload sleeps the same durations everywhere.
func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// residentBytes reads the resident set size from /proc/self/statm, as the
// C++ programs do.
func residentBytes() float64 {
	data, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return -1
	}
	var size, resident int64
	fmt.Sscan(string(data), &size, &resident)
	return float64(resident * int64(os.Getpagesize()))
}

// peakResidentBytes is getrusage's ru_maxrss (the whole process's peak).
func peakResidentBytes() float64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			var kb int64
			fmt.Sscan(strings.TrimSpace(strings.TrimPrefix(line, "VmHWM:")), &kb)
			return float64(kb * 1024)
		}
	}
	return -1
}
