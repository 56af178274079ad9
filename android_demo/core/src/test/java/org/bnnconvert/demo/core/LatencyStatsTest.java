package org.bnnconvert.demo.core;

import static org.junit.Assert.assertEquals;

import org.junit.Test;

public class LatencyStatsTest {
    @Test
    public void medianOfOddAndEvenCounts() {
        assertEquals(2.0, LatencyStats.ofNanos(new long[] {3_000_000, 1_000_000, 2_000_000}).medianMs, 0);
        LatencyStats even = LatencyStats.ofNanos(new long[] {4_000_000, 1_000_000, 2_000_000, 100_000_000});
        assertEquals(3.0, even.medianMs, 0);
        assertEquals(1.0, even.minMs, 0);
        assertEquals(100.0, even.maxMs, 0);
        assertEquals(26.75, even.meanMs, 1e-12);
        assertEquals(4, even.runs);
    }

    @Test
    public void describesItself() {
        assertEquals("median 1.50 ms over 1 runs (min 1.50, mean 1.50, max 1.50)",
                LatencyStats.ofNanos(new long[] {1_500_000}).toString());
    }

    @Test(expected = IllegalArgumentException.class)
    public void rejectsNoRuns() {
        LatencyStats.ofNanos(new long[0]);
    }
}
