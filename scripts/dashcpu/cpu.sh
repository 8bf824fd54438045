#!/bin/bash
# measure the daemon's CPU (utime+stime) over $2 seconds; $1 = pid
pid=$1; secs=$2
tck=$(getconf CLK_TCK)
a=$(awk '{print $14+$15}' /proc/$pid/stat); sleep $secs; b=$(awk '{print $14+$15}' /proc/$pid/stat)
echo "scale=3; ($b-$a)/$tck/$secs*100" | bc
