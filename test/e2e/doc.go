// Package e2e tests the real fastpath binary in network namespaces: each
// test builds its own lab (package lab), runs `fastpath run` in the lab's
// router namespace (package labd), sends real traffic through it (package
// traffic) and checks delivery, ICMP errors, counters, and that nothing is
// left behind. The tests need root; without it they skip.
//
//	sudo go test ./test/e2e/ -count=1 -v
package e2e
