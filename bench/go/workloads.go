// The CPU-bound workloads. Each mirrors the function of the same name in
// bench/greenrt/workloads.cc and bench/fiber/workloads.cc.
package main

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// yield: two goroutines on one P call runtime.Gosched n times each.
// value: ns per switch (2n switches).
func yieldBench(args []string) (map[string]float64, error) {
	fs, workers := newFlags("yield")
	n := fs.Int64("n", 1000000, "yields per goroutine")
	parse(fs, workers, args)
	var wg sync.WaitGroup
	var total int64
	start := time.Now()
	for t := 0; t < 2; t++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var i int64
			for ; i < *n; i++ {
				runtime.Gosched()
			}
			atomic.AddInt64(&total, i)
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	return map[string]float64{"value": nsPer(elapsed, 2**n),
		"check": float64(total)}, nil
}

// spawn-join: start n goroutines that only mark a WaitGroup done, wait for
// all. value: ns per goroutine.
func spawnJoinBench(args []string) (map[string]float64, error) {
	fs, workers := newFlags("spawn-join")
	n := fs.Int64("n", 1000000, "goroutines")
	parse(fs, workers, args)
	var wg sync.WaitGroup
	var ran int64
	start := time.Now()
	wg.Add(int(*n))
	for i := int64(0); i < *n; i++ {
		go func() {
			atomic.AddInt64(&ran, 1)
			wg.Done()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	return map[string]float64{"value": nsPer(elapsed, *n),
		"check": float64(ran)}, nil
}

// skynet: https://github.com/atemerev/skynet -- a tree of goroutines,
// branching 10, each leaf sends its number up through an unbuffered
// channel and every inner node sums its children. value: total ms.
func skynet(c chan<- int64, num, size, div int64) {
	if size == 1 {
		c <- num
		return
	}
	rc := make(chan int64)
	for i := int64(0); i < div; i++ {
		go skynet(rc, num+i*(size/div), size/div, div)
	}
	var sum int64
	for i := int64(0); i < div; i++ {
		sum += <-rc
	}
	c <- sum
}

func skynetBench(args []string) (map[string]float64, error) {
	fs, workers := newFlags("skynet")
	n := fs.Int64("n", 1000000, "leaves (a power of 10)")
	parse(fs, workers, args)
	start := time.Now()
	c := make(chan int64)
	go skynet(c, 0, *n, 10)
	sum := <-c
	elapsed := time.Since(start)
	return map[string]float64{
		"value": float64(elapsed.Nanoseconds()) / 1e6,
		"check": float64(sum)}, nil
}

// ping-pong: two goroutines pass a counter back and forth through two
// unbuffered channels; each round trip adds one. value: ns per round trip.
func pingPongBench(args []string) (map[string]float64, error) {
	fs, workers := newFlags("ping-pong")
	n := fs.Int64("n", 1000000, "round trips")
	parse(fs, workers, args)
	ping := make(chan int64)
	pong := make(chan int64)
	go func() {
		for i := int64(0); i < *n; i++ {
			pong <- (<-ping) + 1
		}
	}()
	start := time.Now()
	var v int64
	for i := int64(0); i < *n; i++ {
		ping <- v
		v = <-pong
	}
	elapsed := time.Since(start)
	return map[string]float64{"value": nsPer(elapsed, *n),
		"check": float64(v)}, nil
}

// fan-in: p producers put 1..n each into one bounded channel; one consumer
// sums them. value: items per second.
func fanInBench(args []string) (map[string]float64, error) {
	fs, workers := newFlags("fan-in")
	producers := fs.Int64("producers", 4, "producers")
	n := fs.Int64("n", 500000, "items per producer")
	capacity := fs.Int("capacity", 1024, "channel capacity")
	parse(fs, workers, args)
	c := make(chan int64, *capacity)
	start := time.Now()
	for p := int64(0); p < *producers; p++ {
		go func() {
			for i := int64(1); i <= *n; i++ {
				c <- i
			}
		}()
	}
	var sum int64
	total := *producers * *n
	for i := int64(0); i < total; i++ {
		sum += <-c
	}
	elapsed := time.Since(start)
	return map[string]float64{
		"value": float64(total) / elapsed.Seconds(),
		"check": float64(sum)}, nil
}

// timers: n goroutines each sleep splitmix64(i) % (max+1) ms. value: wall
// ms from the first spawn to the last wake-up (ideal: max-ms); extras:
// peak RSS.
func timersBench(args []string) (map[string]float64, error) {
	fs, workers := newFlags("timers")
	n := fs.Int64("n", 1000000, "sleepers")
	maxMs := fs.Uint64("max-ms", 100, "longest sleep")
	parse(fs, workers, args)
	var wg sync.WaitGroup
	var woke int64
	start := time.Now()
	wg.Add(int(*n))
	for i := int64(0); i < *n; i++ {
		d := time.Duration(splitmix64(uint64(i))%(*maxMs+1)) * time.Millisecond
		go func() {
			time.Sleep(d)
			atomic.AddInt64(&woke, 1)
			wg.Done()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	return map[string]float64{
		"value":       float64(elapsed.Nanoseconds()) / 1e6,
		"check":       float64(woke),
		"peak_rss_mb": peakResidentBytes() / (1 << 20)}, nil
}

// idle-memory: n goroutines block receiving from one unbuffered channel;
// once all are parked, the growth of the resident set since before the
// first spawn, divided by n. Then n values release them. value: bytes per
// parked goroutine.
func idleMemoryBench(args []string) (map[string]float64, error) {
	fs, workers := newFlags("idle-memory")
	n := fs.Int64("n", 1000000, "parked goroutines")
	parse(fs, workers, args)
	c := make(chan int64)
	var parked, got int64
	var wg sync.WaitGroup
	before := residentBytes()
	wg.Add(int(*n))
	for i := int64(0); i < *n; i++ {
		go func() {
			atomic.AddInt64(&parked, 1)
			atomic.AddInt64(&got, <-c)
			wg.Done()
		}()
	}
	for atomic.LoadInt64(&parked) < *n {
		time.Sleep(time.Millisecond)
	}
	// The last ones counted themselves but may still be on their way into
	// the channel: let them settle.
	time.Sleep(20 * time.Millisecond)
	after := residentBytes()
	for i := int64(0); i < *n; i++ {
		c <- 1
	}
	wg.Wait()
	return map[string]float64{
		"value":    (after - before) / float64(*n),
		"check":    float64(got),
		"total_mb": (after - before) / (1 << 20)}, nil
}

// timeout: context.WithTimeout, Go's way to bound a blocking step (greenrt:
// green::Timeout). value: ns to arm a 1-second deadline around a step that
// does not block and cancel it. fired_ns: ns per 1 us deadline that expires
// while the goroutine waits on an empty channel, until it sees ctx.Done().
func timeoutBench(args []string) (map[string]float64, error) {
	fs, workers := newFlags("timeout")
	n := fs.Int64("n", 1000000, "deadlines armed and cancelled")
	fires := fs.Int64("fires", 10000, "deadlines that expire")
	parse(fs, workers, args)
	background := context.Background()
	var steps int64
	start := time.Now()
	for i := int64(0); i < *n; i++ {
		ctx, cancel := context.WithTimeout(background, time.Second)
		steps += i & 1 // the step the deadline guards
		_ = ctx
		cancel()
	}
	armedNs := nsPer(time.Since(start), *n)
	never := make(chan int)
	var fired int64
	start = time.Now()
	for i := int64(0); i < *fires; i++ {
		ctx, cancel := context.WithTimeout(background, time.Microsecond)
		select {
		case <-never:
		case <-ctx.Done():
			fired++
		}
		cancel()
	}
	firedNs := 0.0
	if *fires > 0 {
		firedNs = nsPer(time.Since(start), *fires)
	}
	return map[string]float64{"value": armedNs, "fired_ns": firedNs,
		"check": float64(steps + (*n - *n/2) + fired)}, nil
}
